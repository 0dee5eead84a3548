//! HLS playlists and the DASH manifest.
