package recording

import (
	"reflect"
	"testing"
	"time"
)

// TestFilterIsZero: only the zero Filter is zero, whichever field is set
// (every field, so a field added later without IsZero knowing fails).
func TestFilterIsZero(t *testing.T) {
	if !(Filter{}).IsZero() {
		t.Error("the zero Filter is not zero")
	}
	values := map[reflect.Kind]any{reflect.String: "x", reflect.Slice: []uint64{1}}
	typ := reflect.TypeFor[Filter]()
	for i := range typ.NumField() {
		var f Filter
		field := reflect.ValueOf(&f).Elem().Field(i)
		switch v, ok := values[field.Kind()]; {
		case ok:
			field.Set(reflect.ValueOf(v))
		case field.Type() == reflect.TypeFor[time.Time]():
			field.Set(reflect.ValueOf(time.Unix(1, 0)))
		default:
			t.Fatalf("field %s of kind %s: teach this test a value", typ.Field(i).Name, field.Kind())
		}
		if f.IsZero() {
			t.Errorf("a Filter with only %s set is zero", typ.Field(i).Name)
		}
	}
}
