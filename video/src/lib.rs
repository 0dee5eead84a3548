//! video: Amazon Kinesis Video Streams on Sluice.
//!
//! - `model`: a video stream's definition (persisted) and a fragment's index entry.
//! - `registry` and `store`: the video streams of the server, shared by every core, and their
//!   persistence under `<data-dir>/video/`.
//! - `api`: the control plane (rest-json, `POST /<operation>`, SigV4 service `kinesisvideo`).
//! - `mkv`: the incremental EBML reader that splits a PutMedia body into a header and clusters.
//! - `fragments`: fragments stored through the narrow storage face (`sluice_core::storage`).
//! - `media`: PutMedia (with its acknowledgement stream), GetMedia, ListFragments and
//!   GetMediaForFragmentList.
//! - `limits`: AWS's per-stream call rates, connection counts and bandwidths, shared by every core.
//! - `remux`: stored MKV fragments turned into fragmented MP4 (HLS, DASH), MPEG-TS (HLS) and MP4
//!   (GetClip), and the playlists and manifests that list them.
//! - `images`: GetImages' stills, decoded by ffmpeg.
//! - `ingest`: what RTSP and RTMP ingest share — frames cut into fragments and stored as PutMedia
//!   would store them.
//! - `rtsp`: RTSP ingest — Sluice pulls an IP camera and stores its video as fragments (on a
//!   thread of its own running tokio, which retina needs).
//! - `rtmp`: RTMP ingest — Sluice listens for RTMP publishers (ffmpeg, OBS, cameras) and stores
//!   what they push into the video stream their stream key names (also on a tokio thread).
//! - `service`: what the HTTP front end calls: the data plane, HLS and DASH sessions and the
//!   resources behind their URLs, and the player page.
//!
//! It reaches records only through the narrow storage face: each video stream keeps its
//! fragments in an internal Kinesis stream (`sluice_core::internal_stream::VIDEO_PREFIX`) of two
//! shards: shard 0 holds fragment data, shard 1 one index entry per fragment. It must not touch
//! segments, executors' internals or shard ownership; the server binary wires it to the HTTP
//! front end.

#![forbid(unsafe_code)]

pub mod api;
pub mod error;
pub mod fragments;
pub mod images;
pub mod ingest;
pub mod limits;
pub mod media;
pub mod mkv;
pub mod model;
pub mod registry;
pub mod remux;
pub mod rtmp;
pub mod rtsp;
pub mod service;
pub mod store;
