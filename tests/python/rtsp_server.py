"""A real RTSP server for the RTSP ingest tests: GStreamer's gst-rtsp-server (Debian's
gir1.2-gst-rtsp-server-1.0, python3-gi and gstreamer1.0-plugins-good/-bad), serving one MKV file
(H.264 + AAC) the way an IP camera serves its stream: H.264 as RFC 6184 (`rtph264pay`, SPS/PPS in
the SDP and before every IDR) and AAC as RFC 3640 `mpeg4-generic` (`rtpmp4gpay`), over RTP/AVP
or interleaved in the RTSP connection (RTP/AVP/TCP), whichever the client asks for.

Every client gets its own pipeline, which plays the file from its start at real-time pace (the
RTSP media is synchronised to the clock), so what a client receives is deterministic: every frame
of the file, in order.

Run with Debian's /usr/bin/python3 (the gi bindings are Debian packages, not in the venv):

    /usr/bin/python3 rtsp_server.py --file clip.mkv --port 8554 [--exit-at-eos]

It prints `rtsp-server: rtsp://127.0.0.1:PORT/clip` once it listens. With --exit-at-eos the
process exits a second after the first client's video has been sent whole: the connection
closes, as when a camera goes away.
"""

import argparse
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--file", required=True)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--exit-at-eos", action="store_true")
    args = parser.parse_args()

    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(args.port))
    factory = GstRtspServer.RTSPMediaFactory()
    location = args.file.replace("\\", "\\\\").replace('"', '\\"')
    factory.set_launch(
        f'( filesrc location="{location}" ! matroskademux name=demux '
        "demux.video_0 ! queue ! h264parse ! rtph264pay name=pay0 pt=96 config-interval=-1 "
        "demux.audio_0 ! queue ! aacparse ! rtpmp4gpay name=pay1 pt=97 )"
    )
    factory.set_shared(False)
    loop = GLib.MainLoop()

    def on_media_configure(_factory, media):
        if not args.exit_at_eos:
            return
        payloader = media.get_element().get_by_name("pay0")

        def on_event(_pad, info):
            event = info.get_event()
            if event is not None and event.type == Gst.EventType.EOS:
                # The last packets leave through the server's own queue: give them a second.
                GLib.timeout_add(1000, loop.quit)
            return Gst.PadProbeReturn.OK

        payloader.get_static_pad("src").add_probe(Gst.PadProbeType.EVENT_DOWNSTREAM, on_event)

    factory.connect("media-configure", on_media_configure)
    server.get_mount_points().add_factory("/clip", factory)
    if server.attach(None) == 0:
        print(f"rtsp-server: cannot listen on 127.0.0.1:{args.port}", file=sys.stderr)
        return 1
    print(f"rtsp-server: rtsp://127.0.0.1:{server.get_bound_port()}/clip", flush=True)
    loop.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
