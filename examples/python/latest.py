#!/usr/bin/python3
"""latest.py is a camd output plugin in Python: it serves the newest JPEG of
each camera at http://<listen>/cameras/<camera>/latest.jpg.

camd starts it from config.yaml (outputs[].command) and talks to it over
gRPC, as it does with its Go plugins. docs/plugins.md is the contract this
file implements; README.md next to it says how to run it.

It runs on Debian's packages (python3-grpcio, python3-protobuf, python3-yaml,
python3-bcrypt, and python3-cryptography for AutoMTLS), hence /usr/bin/python3
rather than whatever python3 comes first in PATH.
"""

import base64
import datetime
import hashlib
import hmac
import http.server
import json
import os
import signal
import socket
import ssl
import sys
import tempfile
import threading
from concurrent import futures
from urllib.parse import parse_qs, unquote, urlsplit

import bcrypt
import grpc
import yaml

import grpc_controller_pb2
import grpc_controller_pb2_grpc
import health_pb2
import health_pb2_grpc
import output_pb2 as pb
import output_pb2_grpc

NAME, VERSION = "latest-py", "1.0.0"
API_VERSION = 1  # the version of camd's contract (output.proto) this implements
COOKIE_KEY, COOKIE_VALUE = "CAMD_PLUGIN", "b2c0a5b4-camd-output"  # camd's go-plugin handshake
# gRPC's default 4 MiB receive limit is too small for big frames; camd's Go
# plugins take 32 MiB frames plus room for the rest of the message.
MAX_MESSAGE = 33 << 20
# A SIGTERM to camd's whole process group reaches plugins too; camd stops
# them in order within this time, so only then does the plugin stop itself.
TERM_GRACE = 3.0

# placeholders: camd's offline picture is not the camera's, so a still
# endpoint refuses it by default (docs/plugins.md, Placeholders).
DEFAULTS = {"listen": "127.0.0.1:8090", "placeholders": "refuse"}


# --- Logging -----------------------------------------------------------------

_log_lock = threading.Lock()


def log(level, message, **fields):
    """Logs one hclog JSON line on stderr; camd re-emits it under the
    output's name with this level and these fields."""
    # go-plugin parses @timestamp with exactly six fractional digits.
    now = datetime.datetime.now().astimezone().isoformat(timespec="microseconds")
    line = json.dumps({"@level": level, "@message": message, "@timestamp": now, **fields})
    with _log_lock:
        sys.stderr.write(line + "\n")
        sys.stderr.flush()


# --- Config ------------------------------------------------------------------


def parse_config(raw):
    """Decodes the output's config block. Returns (config, errors), where
    errors are (key, message) pairs: camd shows each at its file:line."""
    try:
        doc = yaml.safe_load(raw) if raw else None
    except yaml.YAMLError as e:
        return None, [("", f"not valid YAML: {e}")]
    if doc is None:
        doc = {}
    if not isinstance(doc, dict):
        return None, [("", "want a mapping of keys, e.g. listen: 127.0.0.1:8090")]
    errors = [(str(k), "unknown key") for k in doc if k not in DEFAULTS]
    cfg = {**DEFAULTS, **{k: v for k, v in doc.items() if k in DEFAULTS}}
    listen = cfg["listen"]
    if not isinstance(listen, str) or ":" not in listen:
        errors.append(("listen", f"want host:port, e.g. 127.0.0.1:8090 (got {quote(listen)})"))
    elif not (port := listen.rpartition(":")[2]).isdigit() or int(port) > 65535:
        errors.append(("listen", f"want a port number from 0 to 65535 (got {quote(port)})"))
    if cfg["placeholders"] not in ("serve", "refuse"):
        errors.append(("placeholders", f"want serve or refuse (got {quote(cfg['placeholders'])})"))
    return cfg, errors


def quote(value):
    """value as camd's Go plugins show it in messages: "text", 8090."""
    return json.dumps(value, default=str)


# --- Who may look ------------------------------------------------------------

# Compared against when a user name is unknown, so a wrong name costs as much
# as a wrong password and timing reveals no names (the Go SDK's dummyHash).
DUMMY_HASH = b"$2a$10$gMwF1NDkezkyainroS6do.3WL4OZg3Mv8KW85FYvnSr/RaFPtJDDS"


class Guard:
    """Enforces the Security message from Configure: camd's users (HTTP Basic,
    bcrypt hashes) and tokens (bearer or ?token=, SHA-256 digests)."""

    def __init__(self, security):
        self.sec = security

    def check(self, authorization, query_token, camera):
        """Returns (HTTP status, reason): 200 to serve the request."""
        if not self.sec.auth_required:
            return 200, ""
        if authorization:  # it wins over ?token=, as in camd's Go plugins
            scheme, _, value = authorization.strip().partition(" ")
            if scheme.lower() == "basic":
                return self.check_user(value.strip())
            token = value.strip() if scheme.lower() == "bearer" else ""
        else:
            token = query_token
        if not token:
            return 401, "authentication required: log in, or add ?token=<token>"
        found = self.find_token(token)
        if found is None:
            return 401, "unknown token"
        if found.scope != "admin" and found.cameras and camera not in found.cameras:
            return 403, f"{found.name} may not view camera {quote(camera)}"
        return 200, ""

    def check_user(self, basic):
        """Checks HTTP Basic credentials. Users may view every camera."""
        try:
            user, _, password = base64.b64decode(basic, validate=True).decode().partition(":")
        except ValueError:
            return 401, "malformed Basic credentials"
        if not self.password_ok(user, password):
            return 401, "wrong user or password"
        return 200, ""

    def password_ok(self, user, password):
        hashed = next((u.password_bcrypt for u in self.sec.users if u.name == user), None)
        try:
            ok = bcrypt.checkpw(password.encode(), hashed or DUMMY_HASH)
        except ValueError:  # not a bcrypt hash
            ok = False
        return ok and hashed is not None

    def find_token(self, token):
        """Compares the token's digest with every configured one in constant
        time, without stopping at a match, so timing reveals nothing."""
        digest = hashlib.sha256(token.encode()).digest()
        found = None
        for t in self.sec.tokens:
            if hmac.compare_digest(digest, t.sha256):
                found = t
        return found

    def cors(self, origin):
        """The CORS headers for a request from origin: none unless camd's
        cors.allow_origins lists it, so other sites' pages cannot read.
        "*" lets any page read, but never with the browser's saved login."""
        allowed = self.sec.allow_origins
        if not origin:
            return {}
        # Pages may read what the still is, not only the JPEG.
        expose = {"Access-Control-Expose-Headers": "X-Camera-State, X-Frame-Seq", "Vary": "Origin"}
        if origin in allowed:
            return {"Access-Control-Allow-Origin": origin, "Access-Control-Allow-Credentials": "true", **expose}
        if "*" in allowed:
            return {"Access-Control-Allow-Origin": "*", **expose}
        return {}


# --- HTTP --------------------------------------------------------------------


class HTTPServer(http.server.ThreadingHTTPServer):
    daemon_threads = True  # a stuck viewer never holds up stopping


class HTTPServer6(HTTPServer):
    address_family = socket.AF_INET6


def open_http(listen):
    """Listens on host:port ([::1]:8090 for IPv6) for the Handler."""
    host, _, port = listen.rpartition(":")
    host = host.strip("[]")
    return (HTTPServer6 if ":" in host else HTTPServer)((host, int(port)), Handler)


def tls_socket(sock, cert, key):
    """sock serving HTTPS with camd's certificate (config.yaml's tls)."""
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(cert, key)
    # The handshake happens in the request's thread, under its timeout, so
    # a client that never sends one cannot stall accepting the others.
    return tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)


class Handler(http.server.BaseHTTPRequestHandler):
    timeout = 10  # seconds a client may take to send its request

    def do_GET(self):
        # HEAD comes here too: reply() then sends the headers without the body.
        out = self.server.output
        url = urlsplit(self.path)
        parts = url.path.split("/")  # "", "cameras", <camera>, "latest.jpg"
        if len(parts) != 4 or parts[1] != "cameras" or parts[3] != "latest.jpg":
            return self.reply(404, text="not found; try /cameras/<camera>/latest.jpg")
        camera = unquote(parts[2])
        code, reason = out.guard.check(self.headers.get("Authorization"), parse_qs(url.query).get("token", [""])[0], camera)
        if code != 200:
            out.count("denied")
            return self.reply(code, text=reason, headers={"WWW-Authenticate": 'Basic realm="camd"'} if code == 401 else {})
        if camera not in out.cameras:
            return self.reply(404, text=f"no camera {quote(camera)} here")
        frame = out.latest(camera)
        if frame is None:
            return self.reply(503, text=f"no frame from {quote(camera)} yet", headers={"Retry-After": "1"})
        # While the camera is offline camd sends a placeholder picture; it is
        # not the camera's, so refuse it, or (placeholders: serve) say what it is.
        if frame.placeholder and out.cfg["placeholders"] == "refuse":
            return self.reply(
                503,
                text=f"camera {quote(camera)} is offline; placeholders: serve answers camd's offline picture instead",
                headers={"Retry-After": "1", "X-Camera-State": "offline"},
            )
        if self.command == "GET":
            out.count("served", camera)
        state = "offline" if frame.placeholder else "live"
        self.reply(200, body=frame.jpeg, headers={"Content-Type": "image/jpeg", "X-Frame-Seq": str(frame.seq), "X-Camera-State": state})

    do_HEAD = do_GET

    def do_OPTIONS(self):
        # A CORS preflight carries no credential (by the CORS spec): it only
        # asks whether the GET that follows, with one, may be sent. It learns
        # nothing else, so it is answered here, before any check.
        allowed = self.server.output.guard.cors(self.headers.get("Origin"))
        preflight = {
            "Access-Control-Allow-Methods": "GET, HEAD, OPTIONS",
            "Access-Control-Allow-Headers": "Authorization, Content-Type",
            "Access-Control-Max-Age": "600",
        }
        self.reply(204, headers=preflight if allowed else {})

    def reply(self, code, body=b"", text="", headers=None):
        if text:
            body = (text + "\n").encode()
            headers = {"Content-Type": "text/plain; charset=utf-8", **(headers or {})}
        self.send_response(code)
        for k, v in {**(headers or {}), **self.server.output.guard.cors(self.headers.get("Origin"))}.items():
            self.send_header(k, v)
        self.send_header("Cache-Control", "no-store")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def log_message(self, *args):
        pass  # one line per request is noise in camd's log


# --- The Output service ------------------------------------------------------


def camera_counters():
    return {"frames": 0, "placeholders": 0, "served": 0}


class Output(output_pb2_grpc.OutputServicer):
    """camd's Output service. An RPC it does not define answers
    UNIMPLEMENTED, which camd handles: for SetCameras it restarts the plugin
    to change its cameras."""

    def __init__(self):
        self.lock = threading.Lock()
        self.httpd = None
        self.cfg, self.cameras, self.guard = dict(DEFAULTS), [], Guard(pb.Security())
        self.frames = {}  # camera -> newest pb.Frame
        self.counters = {"denied": 0, "cameras": {}}

    def Info(self, request, context):
        return pb.InfoResponse(name=NAME, version=VERSION, api_version=API_VERSION)

    def Configure(self, request, context):
        if self.httpd:
            context.abort(grpc.StatusCode.FAILED_PRECONDITION, "output is already configured and running")
        cfg, errors = parse_config(request.config_yaml)
        if errors:
            return pb.ConfigureResponse(errors=[pb.ConfigError(key=k, message=m) for k, m in errors])
        listen = [cfg["listen"]]  # so camd can refuse a port taken by another output
        if request.validate_only:  # camd validate: check, start nothing
            return pb.ConfigureResponse(listen=listen)
        try:
            httpd = open_http(cfg["listen"])
        except OSError as e:
            # Tied to a key, so camd points at the line that asked for it.
            msg = f"cannot listen on {cfg['listen']}: {e.strerror or e}"
            return pb.ConfigureResponse(listen=listen, errors=[pb.ConfigError(key="listen", message=msg)])
        sec = request.security
        if sec.tls_cert:
            try:
                httpd.socket = tls_socket(httpd.socket, sec.tls_cert, sec.tls_key)
            except (OSError, ssl.SSLError) as e:
                httpd.server_close()
                return pb.ConfigureResponse(listen=listen, start_error=f"tls: {e}")
        with self.lock:
            self.cfg, self.cameras, self.guard = cfg, list(request.cameras), Guard(sec)
            for cam in self.cameras:
                self.counters["cameras"][cam] = camera_counters()
        httpd.output, self.httpd = self, httpd
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        host, port = httpd.server_address[:2]
        base = f"{'https' if sec.tls_cert else 'http'}://{f'[{host}]' if ':' in host else host}:{port}"
        log("info", "serving", addr=f"{host}:{port}", cameras=self.cameras)
        return pb.ConfigureResponse(urls=[f"{base}/cameras/{cam}/latest.jpg" for cam in self.cameras], listen=listen)

    def Frames(self, request_iterator, context):
        # camd sends a camera's next frame only after this ack, and keeps
        # just the newest frame meanwhile. Keeping a frame is quick, so
        # frames are handled one at a time; a plugin with slow work would
        # hand each camera to a thread of its own and ack from there.
        for req in request_iterator:
            f = req.frame
            with self.lock:
                self.frames[f.camera] = f
                c = self.counters["cameras"].setdefault(f.camera, camera_counters())
                c["placeholders" if f.placeholder else "frames"] += 1
            yield pb.FramesResponse(ack_camera=f.camera, ack_seq=f.seq)

    def Status(self, request, context):
        with self.lock:
            return pb.StatusResponse(json=json.dumps(self.counters).encode())

    def Metrics(self, request, context):
        """The same counters in Prometheus' text format. camd serves them in
        its /metrics renamed camd_plugin_<name>, labelled with the output."""
        with self.lock:
            cams = sorted((cam, dict(c)) for cam, c in self.counters["cameras"].items())
            denied = self.counters["denied"]
        text = ""
        for name, key, about in (
            ("latest_frames_total", "frames", "Frames camd sent, by camera."),
            ("latest_placeholder_frames_total", "placeholders", "Offline placeholders camd sent, by camera."),
            ("latest_served_total", "served", "JPEGs served, by camera."),
        ):
            text += f"# HELP {name} {about}\n# TYPE {name} counter\n"
            text += "".join(f'{name}{{camera="{cam}"}} {c[key]}\n' for cam, c in cams)
        text += "# HELP latest_denied_total Requests refused for a missing or wrong credential.\n"
        text += f"# TYPE latest_denied_total counter\nlatest_denied_total {denied}\n"
        return pb.MetricsResponse(text=text.encode())

    def latest(self, camera):
        with self.lock:
            return self.frames.get(camera)

    def count(self, what, camera=None):
        with self.lock:
            if camera is None:
                self.counters[what] += 1
            else:
                self.counters["cameras"][camera][what] += 1

    def stop(self):
        if self.httpd:
            self.httpd.shutdown()
            self.httpd.server_close()


# --- go-plugin's side: health, shutdown, handshake ----------------------------


class Health(health_pb2_grpc.HealthServicer):
    def Check(self, request, context):
        # go-plugin pings service "plugin"; "" is the server as a whole.
        if request.service not in ("", "plugin"):
            context.abort(grpc.StatusCode.NOT_FOUND, f"unknown service {request.service!r}")
        return health_pb2.HealthCheckResponse(status=health_pb2.HealthCheckResponse.SERVING)


class Controller(grpc_controller_pb2_grpc.GRPCControllerServicer):
    def __init__(self, stopping):
        self.stopping = stopping

    def Shutdown(self, request, context):
        log("debug", "camd asked to shut down")
        self.stopping.set()  # main() stops the server once this answer is out
        return grpc_controller_pb2.Empty()


def auto_mtls(camd_cert):
    """With plugin_auto_mtls, camd passes its certificate in
    PLUGIN_CLIENT_CERT and expects one of the plugin's own, for "localhost",
    in the handshake line; each side then accepts only the other. Returns the
    server credentials and that line's certificate field."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1)).not_valid_after(now + datetime.timedelta(days=3650))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    creds = grpc.ssl_server_credentials(
        [(key_pem, cert.public_bytes(serialization.Encoding.PEM))], root_certificates=camd_cert.encode(), require_client_auth=True
    )
    # The DER in base64 without padding (Go's base64.RawStdEncoding).
    return creds, base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode().rstrip("=")


def socket_path():
    """A fresh socket name in the directory camd chose (its private 0700
    one), or else $TMPDIR, as go-plugin's Go servers do."""
    fd, path = tempfile.mkstemp(prefix="plugin", dir=os.environ.get("PLUGIN_UNIX_SOCKET_DIR") or None)
    os.close(fd)
    os.remove(path)
    return path


def watch_parent(stopping):
    """Exits when camd is gone, even after a SIGKILL (camd also sets a
    parent-death signal, but only on Linux)."""
    parent = os.getppid()
    while not stopping.wait(0.25):
        if os.getppid() != parent:
            log("warn", "camd is gone, exiting")
            os._exit(0)


def main():
    if os.environ.get(COOKIE_KEY) != COOKIE_VALUE:
        sys.exit("This is a camd output plugin: camd starts it (outputs[].command in config.yaml).")
    stopping = threading.Event()
    # Ctrl-C in camd's terminal reaches the plugins too: camd stops them.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, lambda *_: threading.Timer(TERM_GRACE, stopping.set).start())

    output = Output()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8), options=[("grpc.max_receive_message_length", MAX_MESSAGE)])
    output_pb2_grpc.add_OutputServicer_to_server(output, server)
    health_pb2_grpc.add_HealthServicer_to_server(Health(), server)
    grpc_controller_pb2_grpc.add_GRPCControllerServicer_to_server(Controller(stopping), server)
    path, cert = socket_path(), ""
    if os.environ.get("PLUGIN_CLIENT_CERT"):
        creds, cert = auto_mtls(os.environ["PLUGIN_CLIENT_CERT"])
        server.add_secure_port("unix:" + path, creds)
    else:
        server.add_insecure_port("unix:" + path)
    server.start()
    # The handshake: core protocol 1, camd's API version, where to connect,
    # and with AutoMTLS the plugin's certificate.
    print(f"1|{API_VERSION}|unix|{path}|grpc|{cert}", flush=True)
    threading.Thread(target=watch_parent, args=(stopping,), daemon=True).start()

    stopping.wait()
    output.stop()
    server.stop(grace=1).wait()
    log("info", "stopped")


if __name__ == "__main__":
    main()
