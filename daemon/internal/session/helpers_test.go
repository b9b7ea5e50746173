package session

import metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

func metaOpts() metav1.UpdateOptions   { return metav1.UpdateOptions{} }
func deleteOpts() metav1.DeleteOptions { return metav1.DeleteOptions{} }
func createOpts() metav1.CreateOptions { return metav1.CreateOptions{} }
func getOpts() metav1.GetOptions       { return metav1.GetOptions{} }
