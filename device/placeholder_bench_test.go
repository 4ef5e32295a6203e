package device

import (
	"fmt"
	"testing"
	"time"
)

// In an outage's first minute the placeholder is drawn once a second per
// offline camera (then once a minute): it must cost next to nothing at
// ESP32 sizes and little at 4K. Each iteration here draws a new one.
func BenchmarkPlaceholder(b *testing.B) {
	now := time.Now()
	info := placeholderInfo{Camera: "front-door", Since: now.Add(-time.Minute), Seen: true,
		Reason: "nothing accepts connections at 192.168.1.50:80: the device is off or restarting", Now: now}
	for _, size := range [][2]int{{640, 480}, {1600, 1200}, {3840, 2160}} {
		b.Run(fmt.Sprintf("%dx%d", size[0], size[1]), func(b *testing.B) {
			var p placeholder
			for i := 0; b.Loop(); i++ {
				info.Now = now.Add(time.Duration(i%50) * time.Second)
				if _, err := p.render(size[0], size[1], info); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
