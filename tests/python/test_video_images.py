"""Kinesis Video Streams GetImages on Sluice, through boto3's `kinesis-video-archived-media`.

What these guard against: images that are not the format asked for or not the size asked for
(each one is opened by ffprobe), a sampling interval that skips or repeats instants, times
outside the stored media answered with anything but NO_MEDIA, paging that loses or repeats
images, and a range AWS refuses being accepted.
"""

import base64
import json
import subprocess
import time
import uuid

import pytest
from botocore.exceptions import ClientError

from video_support import check_ack_sequence, client, create_stream, make_clip, put_clip, tool

CLIP_SECONDS = 4


@pytest.fixture(scope="module")
def stored(endpoint, tmp_path_factory):
    kvs = client("kinesisvideo", endpoint)
    name = f"images-{uuid.uuid4().hex[:10]}"
    data_endpoint = create_stream(kvs, name)
    clip = make_clip(tmp_path_factory.mktemp("images") / "clip.mkv", CLIP_SECONDS)
    producer_start_s = round(time.time() - 60, 3)
    result = put_clip(data_endpoint, name, clip, paced=False, producer_start_s=producer_start_s)
    assert result.status == 200, result
    check_ack_sequence(result.acks)
    archived = client("kinesis-video-archived-media", data_endpoint)
    return archived, name, producer_start_s


def probe_image(data: bytes) -> dict:
    """ffprobe's view of one image given on stdin."""
    out = subprocess.run(
        [tool("ffprobe"), "-v", "error", "-show_streams", "-of", "json", "-i", "pipe:0"],
        input=data, capture_output=True, check=True,
    )
    [stream] = json.loads(out.stdout)["streams"]
    return stream


def test_jpeg_images_sample_the_range_at_the_interval_and_decode(stored):
    archived, name, start_s = stored
    answer = archived.get_images(
        StreamName=name, ImageSelectorType="PRODUCER_TIMESTAMP",
        StartTimestamp=start_s + 0.5, EndTimestamp=start_s + 2.5, SamplingInterval=500,
        Format="JPEG", FormatConfig={"JPEGQuality": "90"},
    )
    images = answer["Images"]
    assert len(images) == 5, images
    assert "NextToken" not in answer
    times = [image["TimeStamp"].timestamp() for image in images]
    assert times == pytest.approx([start_s + 0.5 + 0.5 * i for i in range(5)], abs=0.002)
    for image in images:
        assert "Error" not in image, image
        data = image["ImageContent"]
        data = base64.b64decode(data)
        assert data[:2] == b"\xff\xd8", data[:16]
        stream = probe_image(data)
        assert stream["codec_name"] == "mjpeg" and (stream["width"], stream["height"]) == (320, 240), stream


def test_png_images_scale_with_the_aspect_ratio_and_page(stored):
    archived, name, start_s = stored
    seen = []
    token = None
    pages = 0
    while True:
        kwargs = {"NextToken": token} if token else {}
        answer = archived.get_images(
            StreamName=name, ImageSelectorType="PRODUCER_TIMESTAMP",
            StartTimestamp=start_s, EndTimestamp=start_s + 3, SamplingInterval=1000,
            Format="PNG", WidthPixels=160, MaxResults=2, **kwargs,
        )
        pages += 1
        seen.extend(answer["Images"])
        token = answer.get("NextToken")
        if not token:
            break
        assert pages < 10
    assert pages == 2 and len(seen) == 4, seen
    for image in seen:
        data = base64.b64decode(image["ImageContent"])
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
        stream = probe_image(data)
        assert (stream["width"], stream["height"]) == (160, 120), stream


def test_times_without_media_say_no_media_and_long_ranges_are_refused(stored):
    archived, name, start_s = stored
    answer = archived.get_images(
        StreamName=name, ImageSelectorType="PRODUCER_TIMESTAMP",
        StartTimestamp=start_s - 10, EndTimestamp=start_s - 9, SamplingInterval=1000, Format="JPEG",
    )
    assert [image.get("Error") for image in answer["Images"]] == ["NO_MEDIA", "NO_MEDIA"], answer
    assert all("ImageContent" not in image for image in answer["Images"])
    with pytest.raises(ClientError) as refused:
        archived.get_images(
            StreamName=name, ImageSelectorType="PRODUCER_TIMESTAMP",
            StartTimestamp=start_s, EndTimestamp=start_s + 301, SamplingInterval=1000, Format="JPEG",
        )
    assert refused.value.response["Error"]["Code"] == "InvalidArgumentException"
