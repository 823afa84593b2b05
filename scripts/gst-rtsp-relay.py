#!/usr/bin/python3
"""GStreamer's RTSP server relaying one RTSP camera to any number of clients over one shared
upstream: the peer benches/fanout.rs measures Sharpeye's re-serve against.

Usage: gst-rtsp-relay.py PORT CAMERA_URL   (serves rtsp://127.0.0.1:PORT/cam)
Needs Debian's gir1.2-gst-rtsp-server-1.0, python3-gi, python3-gst-1.0 and gstreamer1.0-plugins-good.
"""
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402

Gst.init(None)
port, camera = sys.argv[1], sys.argv[2]
server = GstRtspServer.RTSPServer()
server.set_address("127.0.0.1")
server.set_service(port)
factory = GstRtspServer.RTSPMediaFactory()
# Depayload and payload again without decoding: the same passthrough work Sharpeye does.
factory.set_launch(
    f"( rtspsrc location={camera} protocols=tcp latency=0 ! rtph264depay ! "
    "h264parse config-interval=-1 ! rtph264pay name=pay0 pt=96 config-interval=-1 )"
)
factory.set_shared(True)
server.get_mount_points().add_factory("/cam", factory)
server.attach(None)
print("ready", flush=True)
GLib.MainLoop().run()
