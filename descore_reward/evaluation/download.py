"""Videos that a benchmark publishes as URLs (GenAI-Bench's `video_generation` rows), downloaded into the
folder its reader resolves them against (`data.video_file_name`): resumable (a file already there is kept;
a download is written beside its target and renamed when complete), with bounded retries.

    descore download genai-bench --data video_generation/ --video-root genai_videos
"""

from __future__ import annotations

import os
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

from ..data import DataError, is_url, table_records, video_file_name
from ..errors import first_line


@dataclass
class Downloaded:
    """What a download run did: files fetched, files already there, and the URLs that failed with why."""

    fetched: int = 0
    present: int = 0
    failed: dict[str, str] = field(default_factory=dict)


def benchmark_urls(data: str | os.PathLike, columns: tuple[str, ...] = ("left_video", "right_video")) -> list[str]:
    """The distinct video URLs of a benchmark table's `columns`, in row order."""
    problems = []
    rows = table_records(Path(data), problems)
    if problems:
        raise DataError(problems)
    urls = [record[c] for _, record in rows for c in columns if is_url(str(record.get(c, "")))]
    return list(dict.fromkeys(urls))


def download_videos(
    urls: list[str], root: str | os.PathLike, retries: int = 3, timeout: float = 60.0, backoff: float = 1.0
) -> Downloaded:
    """Fetch each URL to `root / video_file_name(url)` unless that file exists; a URL that fails after
    `retries` more tries is recorded, never fatal to the others."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    result = Downloaded()
    for url in tqdm(urls, desc="downloading", unit="video"):
        target = root / video_file_name(url)
        if target.is_file():
            result.present += 1
            continue
        partial = target.with_name(target.name + ".part")
        for attempt in range(retries + 1):
            try:
                with urllib.request.urlopen(url, timeout=timeout) as response, partial.open("wb") as out:
                    while chunk := response.read(1 << 20):
                        out.write(chunk)
                os.replace(partial, target)
                result.fetched += 1
                result.failed.pop(url, None)
                break
            except urllib.error.HTTPError as error:
                result.failed[url] = f"HTTP {error.code}"
                if error.code < 500:
                    break  # not found, forbidden: another try would say the same
            except (urllib.error.URLError, OSError) as error:
                result.failed[url] = first_line(error)
            if attempt < retries:
                time.sleep(backoff * 2**attempt)
        partial.unlink(missing_ok=True)
    return result
