package sdk

import (
	"context"
	"sync"
	"testing"
	"time"
)

func TestLatest(t *testing.T) {
	var l Latest[int]
	if _, ver := l.Get(); ver != 0 {
		t.Fatalf("version before Set = %d", ver)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	var wg sync.WaitGroup
	got := make([]int, 10)
	for i := range got {
		wg.Add(1)
		go func() {
			defer wg.Done()
			v, _, err := l.Next(ctx, 0)
			if err != nil {
				t.Error(err)
			}
			got[i] = v
		}()
	}
	time.Sleep(10 * time.Millisecond)
	l.Set(42)
	wg.Wait()
	for _, v := range got {
		if v != 42 {
			t.Fatalf("waiter got %d", v)
		}
	}
	// A slow reader skips to the newest value.
	l.Set(43)
	l.Set(44)
	if v, ver, _ := l.Next(ctx, 1); v != 44 || ver != 3 {
		t.Fatalf("Next = %d v%d, want 44 v3", v, ver)
	}
	short, cancel2 := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel2()
	if _, _, err := l.Next(short, 3); err == nil {
		t.Fatal("Next returned without a new value")
	}
}

func TestDecodeConfig(t *testing.T) {
	type inner struct {
		URL   string `yaml:"url"`
		Token string `yaml:"token"`
	}
	type cfg struct {
		Every Duration `yaml:"every"`
		Free  ByteSize `yaml:"min_free"`
		N     int      `yaml:"n"`
		WHIP  *inner   `yaml:"whip"`
	}
	var c cfg
	err := DecodeConfig([]byte("every: 7d\nmin_free: 1GB\nn: 3\nwhip: {url: http://x, token: t}\n"), &c)
	if err != nil || time.Duration(c.Every) != 7*24*time.Hour || c.Free != 1e9 || c.N != 3 || c.WHIP.URL != "http://x" {
		t.Fatalf("%+v %v", c, err)
	}
	err = DecodeConfig([]byte("every: often\nn: x\nwhip: {urll: 1}\nextra: 1\n"), &c)
	want := []string{`every: invalid duration "often"`, "n: cannot unmarshal", "whip.urll: unknown key", "extra: unknown key"}
	errs := AsConfigErrors(err)
	if len(errs) != len(want) {
		t.Fatalf("errors %v", errs)
	}
	for i, e := range errs {
		if got := e.Error(); len(got) < len(want[i]) || got[:len(want[i])] != want[i] {
			t.Fatalf("error %d = %q, want %q...", i, got, want[i])
		}
	}
}
