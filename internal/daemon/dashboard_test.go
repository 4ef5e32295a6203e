package daemon

import (
	"html/template"
	"strings"
	"testing"

	"github.com/camd/camd/device"
	"github.com/camd/camd/internal/pluginhost"
)

// testStatus has three cameras: a and b served by MJPEG, stills and
// WebRTC (b only by MJPEG and stills), and c by stills alone; d by none.
func testStatus() Status {
	return Status{
		Cameras: []CameraStatus{
			{Name: "a", State: device.StateLive}, {Name: "b", State: device.StateLive},
			{Name: "c", State: device.StateOffline, Reason: "off"}, {Name: "d", State: device.StateFailing},
		},
		Outputs: []pluginhost.Status{
			{Name: "web", Plugin: "mjpeg", State: "running", URLs: []string{
				"http://127.0.0.1:8081/", "http://127.0.0.1:8081/cameras/a/stream.mjpg", "http://127.0.0.1:8081/cameras/b/stream.mjpg"}},
			{Name: "web2", Plugin: "mjpeg", State: "running", URLs: []string{"http://127.0.0.1:9081/cameras/a/stream.mjpg"}},
			{Name: "stills", Plugin: "snapshot", State: "running", URLs: []string{
				"http://127.0.0.1:8083/cameras/a/snapshot.jpg", "http://127.0.0.1:8083/cameras/b/snapshot.jpg", "http://127.0.0.1:8083/cameras/c/snapshot.jpg"}},
			{Name: "rtc", Plugin: "webrtc", State: "running", URLs: []string{
				"http://127.0.0.1:8082/", "http://127.0.0.1:8082/cameras/a/", "http://127.0.0.1:8082/cameras/a/whep"}},
			// A player page without WHEP is no use to the page's player.
			{Name: "odd", Plugin: "custom", State: "running", URLs: []string{"http://127.0.0.1:7000/cameras/b/"}},
		},
	}
}

func TestDashboardModel(t *testing.T) {
	for _, tc := range []struct {
		camera, base string
		want         map[string]string // camera → "mjpeg still player whep" via URLs, "-" for none
		outputs      map[string]string // camera → outputs serving it
	}{
		{
			camera: "", base: "",
			want: map[string]string{
				"a": "outputs/web/cameras/a/stream.mjpg outputs/stills/cameras/a/snapshot.jpg outputs/rtc/cameras/a/ outputs/rtc/cameras/a/whep",
				"b": "outputs/web/cameras/b/stream.mjpg outputs/stills/cameras/b/snapshot.jpg - -",
				"c": "- outputs/stills/cameras/c/snapshot.jpg - -",
				"d": "- - - -",
			},
			outputs: map[string]string{"a": "web web2 stills rtc", "b": "web stills odd", "c": "stills", "d": ""},
		},
		{
			camera: "a", base: "../../",
			want: map[string]string{
				"a": "../../outputs/web/cameras/a/stream.mjpg ../../outputs/stills/cameras/a/snapshot.jpg ../../outputs/rtc/cameras/a/ ../../outputs/rtc/cameras/a/whep",
			},
		},
	} {
		m := newDashModel(testStatus(), tc.camera, "", false)
		if m.Base != tc.base {
			t.Errorf("camera %q: base %q, want %q", tc.camera, m.Base, tc.base)
		}
		for _, c := range m.Cameras {
			want, ok := tc.want[c.Name]
			if !ok {
				continue
			}
			var got []string
			for _, ep := range []*endpoint{c.MJPEG, c.Still, c.Player, c.WHEP} {
				if ep == nil {
					got = append(got, "-")
				} else {
					got = append(got, ep.Via)
				}
			}
			if g := strings.Join(got, " "); g != want {
				t.Errorf("camera %q on page %q:\n got %s\nwant %s", c.Name, tc.camera, g, want)
			}
			if o, ok := tc.outputs[c.Name]; ok && strings.Join(c.Outputs, " ") != o {
				t.Errorf("camera %q: outputs %v, want %s", c.Name, c.Outputs, o)
			}
		}
	}
	m := newDashModel(testStatus(), "", "", false)
	if m.Cameras[0].MJPEG.Direct != "http://127.0.0.1:8081/cameras/a/stream.mjpg" {
		t.Errorf("direct URL %q", m.Cameras[0].MJPEG.Direct)
	}
	if want := "a,b,c,d|web=http://127.0.0.1:8081/ http://127.0.0.1:8081/cameras/a/stream.mjpg http://127.0.0.1:8081/cameras/b/stream.mjpg,web2="; !strings.HasPrefix(m.Sig, want) {
		t.Errorf("sig %q, want it to start %q", m.Sig, want)
	}
}

// The pages render every camera with its picture and player choices, and
// carry a token on every URL the browser loads by itself.
func TestDashboardPages(t *testing.T) {
	render := func(page *template.Template, m dashModel) string {
		var b strings.Builder
		if err := page.Execute(&b, m); err != nil {
			t.Fatal(err)
		}
		return b.String()
	}
	for _, tc := range []struct {
		name  string
		page  *template.Template
		model dashModel
		want  []string
		not   []string
	}{
		{
			name: "dashboard", page: dashboardPage, model: newDashModel(testStatus(), "", "", false),
			want: []string{
				`data-camera="a" href="cameras/a/"`, `<img class="thumb" alt="a">`, `<img class="thumb" alt="c">`,
				`No MJPEG or snapshot output serves this camera.`, `class="badge offline"`,
				`<tr data-output="rtc">`, `href="outputs/rtc/"`, `href="api/status"`,
				`window.camd = {"base":""`, `setInterval(poll, 1500)`,
			},
		},
		{
			name: "dashboard with a token", page: dashboardPage, model: newDashModel(testStatus(), "", "t&k<n>", true),
			want: []string{
				`href="cameras/a/?token=t%26k%3cn%3e"`, `"token":"t\u0026k\u003cn\u003e"`,
				`href="api/status?token=t%26k%3cn%3e"`, `href="outputs/rtc/?token=t%26k%3cn%3e"`,
			},
			not: []string{`t&k<n>`},
		},
		{
			name: "camera page", page: cameraPage, model: newDashModel(testStatus(), "a", "", false),
			want: []string{
				`<title>a · camd</title>`, `href="#webrtc"`, `href="#mjpeg"`, `href="#still"`,
				`data-url="../../outputs/web/cameras/a/stream.mjpg"`, `data-url="../../outputs/rtc/cameras/a/whep"`,
				`ffmpeg -f mjpeg -i`, `MJPEG IP Camera`, `http://127.0.0.1:8082/cameras/a/`,
			},
		},
		{
			name: "camera page, stills only", page: cameraPage, model: newDashModel(testStatus(), "c", "", false),
			want: []string{`href="#still"`, `data-url="../../outputs/stills/cameras/c/snapshot.jpg"`},
			not:  []string{`href="#webrtc"`, `href="#mjpeg"`, `u-vlc`},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			html := render(tc.page, tc.model)
			for _, w := range tc.want {
				if !strings.Contains(html, w) {
					t.Errorf("page lacks %s", w)
				}
			}
			for _, n := range tc.not {
				if strings.Contains(html, n) {
					t.Errorf("page has %s", n)
				}
			}
			if t.Failed() {
				t.Logf("page:\n%s", html)
			}
		})
	}
}
