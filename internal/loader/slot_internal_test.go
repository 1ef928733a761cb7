package loader

import (
	"testing"
	"time"
)

// TestReleaseLeavesTheDestroyToAGoroutineOfItsOwn: the request that drops a
// retired session's last reference answers without waiting for ONNX Runtime to
// destroy it, while the slot's own retirement destroys at once.
func TestReleaseLeavesTheDestroyToAGoroutineOfItsOwn(t *testing.T) {
	s, err := Open("../../models/calling_score/model.onnx", DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	l := NewLoaded(s, 1, "d", nil)
	unblock := make(chan struct{})
	l.onClose = func() { <-unblock }
	released := make(chan struct{})
	go func() {
		l.Release()
		close(released)
	}()
	select {
	case <-released:
	case <-time.After(5 * time.Second):
		t.Fatal("Release waited for the session to be destroyed")
	}
	close(unblock)
	<-l.Closed()

	s, err = Open("../../models/calling_score/model.onnx", DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	l = NewLoaded(s, 2, "d", nil)
	l.retire()
	select {
	case <-l.Closed():
	default:
		t.Fatal("retire returned before the session was destroyed")
	}
}
