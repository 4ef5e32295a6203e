"""Reads a camera the way Home Assistant's mjpeg integration does.

Home Assistant's MjpegCamera (homeassistant/components/mjpeg/camera.py)
uses aiohttp: camera_image() GETs still_image_url, and the live view reads
mjpeg_url as a byte stream, taking the bytes between a JPEG start
(FF D8) and end (FF D9) marker as a frame. Usage:

    ha_mjpeg.py MJPEG_URL STILL_URL FRAMES

Prints "still <bytes>" and one "frame <bytes>" line per frame; exits
non-zero on any HTTP error.
"""
import asyncio
import sys

import aiohttp


async def main(mjpeg_url, still_url, frames):
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        async with session.get(still_url) as resp:
            resp.raise_for_status()
            still = await resp.read()
            if not still.startswith(b"\xff\xd8"):
                raise SystemExit("still is not a JPEG")
            print("still", len(still), flush=True)
        async with session.get(mjpeg_url) as resp:
            resp.raise_for_status()
            buf, got = b"", 0
            async for chunk in resp.content.iter_chunked(16384):
                buf += chunk
                start = buf.find(b"\xff\xd8")
                end = buf.find(b"\xff\xd9", start + 2) if start >= 0 else -1
                while start >= 0 and end >= 0:
                    print("frame", end + 2 - start, flush=True)
                    got += 1
                    if got >= frames:
                        return
                    buf = buf[end + 2:]
                    start = buf.find(b"\xff\xd8")
                    end = buf.find(b"\xff\xd9", start + 2) if start >= 0 else -1


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
