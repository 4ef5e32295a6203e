package daemon

import "testing"

func TestConflicts(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want bool
	}{
		{"127.0.0.1:8081", "127.0.0.1:8081", true},
		{"127.0.0.1:8081", "127.0.0.1:8082", false},
		{"0.0.0.0:8081", "127.0.0.1:8081", true},
		{":8081", "192.168.1.5:8081", true},
		{"[::]:8081", "127.0.0.1:8081", true},
		{"localhost:8081", "127.0.0.1:8081", true},
		{"127.0.0.1:8081", "192.168.1.5:8081", false},
		{"127.0.0.1:0", "127.0.0.1:0", false},
		{"garbage", "127.0.0.1:8081", false},
	} {
		if got := conflicts(tc.a, tc.b); got != tc.want {
			t.Errorf("conflicts(%q, %q) = %v, want %v", tc.a, tc.b, got, tc.want)
		}
		if got := conflicts(tc.b, tc.a); got != tc.want {
			t.Errorf("conflicts(%q, %q) = %v, want %v (not symmetric)", tc.b, tc.a, got, tc.want)
		}
	}
}
