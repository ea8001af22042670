"""A game client talking to `charforge serve` the way a Godot, Unity or Ren'Py client would: plain HTTP polling.

    charforge serve --port 8000 &            # in another terminal (add --api-key KEY to require a key)
    python examples/game_client.py mira joy=0.8 [--url http://127.0.0.1:8000] [--key KEY] [--out cg.png]

POST the feeling; a 200 carries the CG at once, a 202 a job to poll; then download the file, sending
the ETag of the copy already on disk so an unchanged picture costs a 304 and no bytes.
"""

from __future__ import annotations

import argparse
import json
import time
import urllib.error
import urllib.request
from pathlib import Path


def call(url: str, key: str | None, method: str = "GET", body: dict | None = None, headers: dict | None = None):
    request = urllib.request.Request(url, method=method, data=None if body is None else json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json", **(headers or {})})  # fmt: skip
    if key:
        request.add_header("Authorization", f"Bearer {key}")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:  # 304 and 4xx arrive here
        return error.code, dict(error.headers), error.read()


def feel(base: str, key: str | None, name: str, emotions: dict[str, float], poll: float = 0.25) -> dict:
    """The asset for a feeling: at once when cached, else after its render job finishes."""
    status, _, data = call(f"{base}/characters/{name}/emotion", key, "POST", {"emotions": emotions})
    answer = json.loads(data)
    if status not in (200, 202):
        raise SystemExit(f"error {status}: {answer['error']['message']}")
    if status == 200:
        return answer["asset"]
    job_id = answer["job"]["id"]
    while True:
        _, _, data = call(f"{base}/jobs/{job_id}", key)
        job = json.loads(data)
        if job["status"] == "done":
            return job["result"]["asset"]
        if job["status"] in ("failed", "cancelled"):
            raise SystemExit(f"render failed: {job['error']}")
        print(f"  job {job_id}: {job['status']}")
        time.sleep(poll)


def download(base: str, key: str | None, asset: dict, out: Path) -> bool:
    """Fetch the file unless the copy on disk is current; returns whether bytes were transferred."""
    etag_file = out.with_suffix(out.suffix + ".etag")
    headers = {"If-None-Match": etag_file.read_text()} if out.exists() and etag_file.exists() else {}
    status, response_headers, data = call(base + asset["url"], key, headers=headers)
    if status == 304:
        return False
    out.write_bytes(data)
    etag_file.write_text(response_headers.get("ETag") or response_headers.get("etag", ""))
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name")
    parser.add_argument("emotions", nargs="+", help="EMOTION=INTENSITY, e.g. joy=0.8")
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--key", default=None)
    parser.add_argument("--out", type=Path, default=Path("cg.png"))
    args = parser.parse_args()
    emotions = {k: float(v) for k, v in (item.split("=", 1) for item in args.emotions)}
    asset = feel(args.url.rstrip("/"), args.key, args.name, emotions)
    fresh = download(args.url.rstrip("/"), args.key, asset, args.out)
    how = "downloaded" if fresh else "unchanged, 304"
    print(f"{args.name} {emotions}: {args.out} ({how}; sha256 {asset['sha256'][:12]})")


if __name__ == "__main__":
    main()
