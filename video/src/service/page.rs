//! The built-in player page: a LIVE session played with hls.js.

/// The built-in player: asks for a LIVE session (retrying until the stream has fragments) and
/// plays it with hls.js.
pub(super) const PLAYER_PAGE: &str = r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{{STREAM}} · Sluice video</title>
<style>
body { font-family: system-ui, sans-serif; margin: 2rem; background: #111; color: #eee; }
video { max-width: 100%; background: #000; }
#status { color: #aaa; }
</style>
</head>
<body>
<h1>{{STREAM}}</h1>
<video id="video" controls muted autoplay playsinline></video>
<p id="status">Waiting for the stream…</p>
<script src="/video/hls.min.js"></script>
<script>
const stream = "{{STREAM}}";
const video = document.getElementById("video");
const status = document.getElementById("status");
async function start() {
  for (;;) {
    const answer = await fetch("/video/" + encodeURIComponent(stream) + "/session");
    if (answer.ok) {
      const body = await answer.json();
      return body.HLSStreamingSessionURL;
    }
    status.textContent = "Waiting for the stream (" + answer.status + ")…";
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
}
start().then((url) => {
  status.textContent = "Playing live.";
  if (window.Hls && Hls.isSupported()) {
    const hls = new Hls({ liveSyncDurationCount: 2 });
    hls.loadSource(url);
    hls.attachMedia(video);
    hls.on(Hls.Events.ERROR, (_, data) => {
      if (data.fatal) { status.textContent = "Playback error: " + data.details; }
    });
  } else {
    video.src = url;
  }
  video.play().catch(() => {});
});
</script>
</body>
</html>
"#;

pub(super) fn html_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
