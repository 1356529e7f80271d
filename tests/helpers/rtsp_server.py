"""A real GStreamer RTSP server for tests; run it with the system Python (/usr/bin/python3), which has gi.

    /usr/bin/python3 rtsp_server.py PORT MOUNT FILE.mp4

Serves the H.264 track of FILE.mp4 at rtsp://127.0.0.1:PORT/MOUNT, paced in real time, and prints
READY once listening.
"""

import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402


def main() -> None:
    port, mount, path = sys.argv[1], sys.argv[2], sys.argv[3]
    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(port)
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(
        f'( filesrc location="{path}" ! qtdemux ! h264parse ! rtph264pay name=pay0 pt=96 config-interval=1 )'
    )
    factory.set_shared(True)
    server.get_mount_points().add_factory(f"/{mount}", factory)
    if server.attach(None) == 0:
        print("FAILED to bind", flush=True)
        sys.exit(1)
    print("READY", flush=True)
    GLib.MainLoop().run()


if __name__ == "__main__":
    main()
