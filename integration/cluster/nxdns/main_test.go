package main

import (
	"testing"

	"golang.org/x/net/dns/dnsmessage"
)

func TestAnswer(t *testing.T) {
	name := dnsmessage.MustNewName("_grpc_config.example.com.")
	b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: 4242, RecursionDesired: true})
	b.StartQuestions()
	b.Question(dnsmessage.Question{Name: name, Type: dnsmessage.TypeTXT, Class: dnsmessage.ClassINET})
	q, _ := b.Finish()
	out, ok := answer(q)
	if !ok {
		t.Fatal("no answer")
	}
	var m dnsmessage.Message
	if err := m.Unpack(out); err != nil {
		t.Fatal(err)
	}
	if m.ID != 4242 || !m.Response || m.RCode != dnsmessage.RCodeNameError || !m.RecursionDesired ||
		len(m.Questions) != 1 || m.Questions[0].Name != name || m.Questions[0].Type != dnsmessage.TypeTXT || len(m.Answers) != 0 {
		t.Errorf("answer: %+v", m)
	}
	if _, ok := answer(out); ok {
		t.Error("answered a response")
	}
	if _, ok := answer([]byte{1, 2, 3}); ok {
		t.Error("answered garbage")
	}
}
