package server

import (
	"errors"
	"testing"
)

func TestSendBatches(t *testing.T) {
	for _, n := range []int{0, 1, 100, 101, 250} {
		items := make([]int, n)
		for i := range items {
			items[i] = i
		}
		var got []int
		var sizes []int
		if err := SendBatches(items, func(b []int) error { got = append(got, b...); sizes = append(sizes, len(b)); return nil }); err != nil {
			t.Fatal(err)
		}
		if len(got) != n || len(sizes) != (n+StreamBatch-1)/StreamBatch {
			t.Errorf("%d items: sent %d in %v", n, len(got), sizes)
		}
		for i, v := range got {
			if v != i {
				t.Fatalf("%d items: item %d is %d", n, i, v)
			}
		}
	}
	boom := errors.New("client gone")
	if err := SendBatches(make([]int, 300), func([]int) error { return boom }); !errors.Is(err, boom) {
		t.Errorf("send error: %v", err)
	}
}
