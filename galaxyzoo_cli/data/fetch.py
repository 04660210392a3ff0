"""Download the Kaggle competition with the official ``kaggle`` client and unpack it safely.

:func:`fetch_kaggle` is what ``galaxyzoo fetch`` runs. Its contract:

- Credentials come from ``KAGGLE_API_TOKEN``, ``KAGGLE_USERNAME`` + ``KAGGLE_KEY`` or
  ``kaggle.json`` (in ``$KAGGLE_CONFIG_DIR`` or ``~/.kaggle``). We look for them ourselves before
  importing the client, because ``import kaggle`` authenticates at import time and prints its own
  help. The key is never printed, logged or written by this module, and it is scrubbed from every
  client message we pass on.
- A folder that a previous fetch completed and verified (marker file :data:`MARKER` plus
  :func:`galaxyzoo_cli.data.catalogue.check_layout`) is left alone: nothing is downloaded.
- The download goes to ``DATA/.galaxyzoo-fetch/download/``, where the client resumes an interrupted
  transfer with an HTTP Range request on the next run. Extraction goes to
  ``DATA/.galaxyzoo-fetch/extract/`` and is moved into place only when complete; the marker is
  written last, after verification. So an interrupted run never leaves a folder that looks complete.
- Archive members that would land outside the target folder (absolute paths, ``..``, symlinks,
  device files) are refused before anything of that archive is written
  (:mod:`galaxyzoo_cli.data.archive`).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shutil
import stat
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from galaxyzoo_cli.core.errors import BadInputError, JobFailedError
from galaxyzoo_cli.core.files import install_entries, write_json_atomic
from galaxyzoo_cli.core.progress import SILENT, Reporter
from galaxyzoo_cli.data.archive import BENCHMARKS_DIR, CorruptArchiveError, extract_competition
from galaxyzoo_cli.data.catalogue import (
    LABELS_CSV,
    TEST_IMAGES,
    TRAIN_IMAGES,
    LayoutReport,
    check_layout,
)

COMPETITION = "galaxy-zoo-the-galaxy-challenge"
RULES_URL = f"https://www.kaggle.com/competitions/{COMPETITION}/rules"
TOKEN_URL = "https://www.kaggle.com/settings"
EXPECTED_TRAIN_IMAGES = 61_578
EXPECTED_TEST_IMAGES = 79_975
MARKER = ".galaxyzoo-fetch.json"
"""Written into the data folder only after the extracted layout was verified."""
STATE_DIR = ".galaxyzoo-fetch"
"""Partial download and extraction in progress; removed after a successful fetch."""
ARCHIVES_DIR = "archives"
ARCHIVE_NAME = f"{COMPETITION}.zip"

_NO_CREDENTIALS = (
    "no Kaggle credentials found. Create an API token at "
    f"{TOKEN_URL} (API section), then either save kaggle.json as ~/.kaggle/kaggle.json "
    "(or in $KAGGLE_CONFIG_DIR; chmod 600), or set KAGGLE_USERNAME and KAGGLE_KEY, or set "
    "KAGGLE_API_TOKEN."
)


# --------------------------------------------------------------------------------------------
# Result
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FetchResult:
    """What :func:`fetch_kaggle` did and what the data folder now holds."""

    data_dir: Path
    downloaded: bool
    skipped: bool
    layout: LayoutReport
    seconds: float
    benchmarks: list[str] = field(default_factory=list)
    archive: Path | None = None

    @property
    def matches_kaggle_counts(self) -> bool:
        """True when the folder holds exactly the real competition's image counts."""
        return (
            self.layout.n_train_images == EXPECTED_TRAIN_IMAGES
            and self.layout.n_test_images == EXPECTED_TEST_IMAGES
        )

    def as_dict(self) -> dict[str, Any]:
        """A JSON-able dict: data_dir, downloaded, skipped, the layout counts, seconds, …"""
        counts = self.layout.as_dict()
        counts.pop("data_dir")
        return {
            "data_dir": str(self.data_dir),
            "downloaded": self.downloaded,
            "skipped": self.skipped,
            **counts,
            "matches_kaggle_counts": self.matches_kaggle_counts,
            "benchmarks": self.benchmarks,
            "archive": None if self.archive is None else str(self.archive),
            "seconds": round(self.seconds, 3),
        }

    def summary(self) -> str:
        """One or two lines for a human."""
        r = self.layout
        counts = (
            f"{r.n_train_images:,} training images, {r.n_labels:,} labels, "
            f"{r.n_test_images:,} test images"
        )
        if self.skipped:
            return (
                f"{self.data_dir} already holds the verified Kaggle data ({counts}); "
                "nothing to do. Use --force to fetch again."
            )
        line = f"Fetched the Kaggle data into {self.data_dir}: {counts} ({self.seconds:.0f} s)."
        if self.archive is not None:
            line += f"\nKept the archive: {self.archive}"
        if not self.matches_kaggle_counts:
            line += (
                f"\nNote: the real competition has {EXPECTED_TRAIN_IMAGES:,} training and "
                f"{EXPECTED_TEST_IMAGES:,} test images; this archive is different."
            )
        return line


# --------------------------------------------------------------------------------------------
# Credentials
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Credentials:
    """Where the Kaggle credentials come from; ``secrets`` only serve to scrub messages."""

    source: str
    config_dir: Path
    secrets: tuple[str, ...] = field(repr=False, default=())


def kaggle_config_dir() -> Path:
    """The folder the kaggle client reads ``kaggle.json`` from (same rules as the client)."""
    configured = os.environ.get("KAGGLE_CONFIG_DIR")
    if configured:
        return Path(configured).expanduser()
    # os.path.expanduser leaves "~" as it is where no home folder is known (HOME unset, no
    # passwd entry: batch jobs, containers); Path.expanduser would raise there.
    home = Path(os.path.expanduser("~/.kaggle"))
    if sys.platform.startswith("linux") and not home.exists():
        # The client follows the XDG spec when the legacy folder does not exist.
        xdg = os.environ.get("XDG_CONFIG_HOME") or os.path.expanduser("~/.config")
        return Path(xdg) / "kaggle"
    return home


def find_credentials(reporter: Reporter = SILENT) -> Credentials:
    """Find Kaggle credentials the way the client will, without importing it.

    Order: ``KAGGLE_API_TOKEN`` (a token or a path to a file holding one), ``KAGGLE_USERNAME`` +
    ``KAGGLE_KEY``, ``kaggle.json``, then the client's own token files (``~/.kaggle/access_token``,
    ``~/.kaggle/credentials.json`` from ``kaggle auth login``). Warns through ``reporter`` when
    kaggle.json is readable by group or others. Raises :class:`BadInputError` saying how to provide
    credentials when there are none.
    """
    config_dir = kaggle_config_dir()
    token = os.environ.get("KAGGLE_API_TOKEN", "").strip()
    if token:
        secrets = [token]
        token_file = Path(os.path.expanduser(token))
        if token_file.is_file():
            secrets.append(token_file.read_text(encoding="utf-8").strip())
        return Credentials("KAGGLE_API_TOKEN", config_dir, _secret_forms(secrets))
    key = os.environ.get("KAGGLE_KEY", "")
    if os.environ.get("KAGGLE_USERNAME") and key:
        return Credentials("KAGGLE_USERNAME and KAGGLE_KEY", config_dir, _secret_forms([key]))
    config = config_dir / "kaggle.json"
    if config.is_file():
        try:
            content = json.loads(config.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            # Never quote the file: it holds the key.
            raise BadInputError(
                f"{config}: not a readable kaggle.json. Download a fresh token from {TOKEN_URL}."
            ) from None
        if isinstance(content, dict) and content.get("username") and content.get("key"):
            _warn_if_readable(config, reporter)
            return Credentials(str(config), config_dir, _secret_forms([str(content["key"])]))
    for name in ("access_token", "access_token.txt", "credentials.json"):
        path = Path(os.path.expanduser("~/.kaggle")) / name
        if path.is_file() and path.stat().st_size > 0:
            return Credentials(str(path), config_dir)
    raise BadInputError(_NO_CREDENTIALS)


def _secret_forms(secrets: list[str]) -> tuple[str, ...]:
    """Every form in which a secret could appear in a message, longest first."""
    import base64

    found = {s for s in secrets if s}
    # requests sends the key inside a Basic auth header, so scrub that form too.
    username = os.environ.get("KAGGLE_USERNAME", "")
    found |= {base64.b64encode(f"{username}:{s}".encode()).decode() for s in list(found)}
    return tuple(sorted(found, key=len, reverse=True))


def _warn_if_readable(config: Path, reporter: Reporter) -> None:
    if os.name == "nt":
        return
    if config.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        reporter.log(
            f"Warning: {config} is readable by other users; run `chmod 600 {config}` "
            "to keep your Kaggle key private."
        )


def _scrub(text: str, creds: Credentials) -> str:
    """Remove secrets and signed-URL query strings from a message before it is shown."""
    for secret in creds.secrets:
        if len(secret) >= 4:
            text = text.replace(secret, "***")
    return re.sub(r"(https?://[^\s?]+)\?\S*", r"\1?…", text)


# --------------------------------------------------------------------------------------------
# Download
# --------------------------------------------------------------------------------------------


def _kaggle_api(creds: Credentials) -> Any:
    """An authenticated ``KaggleApi``; imported here so a missing client or login costs nothing."""
    # Importing the package runs `api.authenticate()` and prints to stdout (help text, permission
    # warnings): keep stdout clean for --json.
    with contextlib.redirect_stdout(io.StringIO()):
        from kaggle.api.kaggle_api_extended import KaggleApi

    api = KaggleApi()
    # The client fixes its config path as a class attribute at import time; use today's.
    api.config_dir = str(creds.config_dir)
    api.config = str(creds.config_dir / "kaggle.json")
    # Verbose mode (VERBOSE=1) prints request headers, which carry the credentials.
    api.args = [a for a in api.args if a not in ("--verbose", "-v")]
    try:
        with contextlib.redirect_stdout(sys.stderr):
            api.authenticate()
    except SystemExit:
        # authenticate() calls exit(1) when it finds nothing usable (e.g. an expired token).
        raise BadInputError(
            f"the kaggle client found no usable credentials in {creds.source} (an expired "
            f"token?); {_NO_CREDENTIALS}"
        ) from None
    return api


@contextlib.contextmanager
def _watch_download(path: Path, reporter: Reporter) -> Iterator[None]:
    """Show the growth of ``path`` as progress (MB): the client only offers its own tqdm bar."""
    stop = threading.Event()
    with reporter.task(f"Downloading {path.name} (MB)", total=None) as task:

        def poll() -> None:
            seen = 0
            while not stop.wait(0.25):
                try:
                    size = path.stat().st_size
                except OSError:
                    continue
                if size > seen:
                    task.advance((size - seen) / 1e6)
                    seen = size

        watcher = threading.Thread(target=poll, name="galaxyzoo-download-progress", daemon=True)
        watcher.start()
        try:
            yield
        finally:
            stop.set()
            watcher.join()


def download_competition(
    download_dir: Path, creds: Credentials, force: bool = False, reporter: Reporter = SILENT
) -> Path:
    """Download the competition zip into ``download_dir`` with the kaggle client; return its path.

    Without ``force`` the client resumes a partial file it left there (HTTP Range). Maps client
    errors: HTTP 401/403 to :class:`BadInputError` (403: accept the rules at :data:`RULES_URL`),
    404, other HTTP errors, network failures and timeouts to :class:`JobFailedError`. Messages are
    scrubbed of credentials.
    """
    import requests

    download_dir.mkdir(parents=True, exist_ok=True)
    api = _kaggle_api(creds)
    target = download_dir / ARCHIVE_NAME
    try:
        # The client prints status lines to stdout; stdout belongs to our result (--json).
        with _watch_download(target, reporter), contextlib.redirect_stdout(sys.stderr):
            api.competition_download_files(
                COMPETITION, path=str(download_dir), force=force, quiet=True
            )
    except requests.HTTPError as e:
        status = e.response.status_code if e.response is not None else None
        detail = _scrub(str(e), creds)
        if status == 403:
            raise BadInputError(
                f"Kaggle refused the download (HTTP 403: {detail}). Sign in and accept the "
                f"competition rules at {RULES_URL}, then rerun."
            ) from None
        if status == 401:
            raise BadInputError(
                f"Kaggle rejected the credentials from {creds.source} (HTTP 401). Create a new "
                f"token at {TOKEN_URL}."
            ) from None
        if status == 404:
            raise JobFailedError(
                f"Kaggle does not know the competition {COMPETITION!r} (HTTP 404: {detail}). "
                "Check https://www.kaggle.com/competitions and your kaggle client version."
            ) from None
        raise JobFailedError(
            f"Kaggle answered HTTP {status} ({detail}). Try again later; rerun to resume."
        ) from None
    except (requests.RequestException, ValueError) as e:
        # Connection errors, timeouts, truncated transfers (after the client's own retries) and
        # its size check (ValueError) are all worth a plain retry: the partial file stays.
        raise JobFailedError(
            f"downloading from Kaggle failed ({type(e).__name__}: {_scrub(str(e), creds)}). "
            "Check your connection and rerun: the download resumes where it stopped."
        ) from None
    except OSError as e:
        raise JobFailedError(f"{download_dir}: cannot write the download ({e}).") from None
    if not target.is_file():
        found = sorted(p.name for p in download_dir.iterdir())
        raise JobFailedError(
            f"the kaggle client did not produce {ARCHIVE_NAME} in {download_dir} (found: "
            f"{', '.join(found) or 'nothing'}). Rerun with --force."
        )
    return target


# --------------------------------------------------------------------------------------------
# The whole fetch
# --------------------------------------------------------------------------------------------


def _verified(data_dir: Path) -> LayoutReport | None:
    """The layout report when a previous fetch completed here and the files are still all there."""
    marker = data_dir / MARKER
    try:
        recorded = json.loads(marker.read_text(encoding="utf-8"))["counts"]
        report = check_layout(data_dir, require_test=True)
    except (OSError, ValueError, KeyError, TypeError, BadInputError):
        return None
    now = report.as_dict()
    keys = ("n_labels", "n_train_images", "n_test_images")
    same = all(now.get(k) == recorded.get(k) for k in keys)
    return report if same else None


def _refuse_foreign_data(data_dir: Path) -> None:
    """Do not replace data that no fetch of ours put there (e.g. synthetic or hand-made)."""
    if (data_dir / MARKER).exists() or (data_dir / STATE_DIR).exists():
        return
    present = [n for n in (TRAIN_IMAGES, TEST_IMAGES, LABELS_CSV) if (data_dir / n).exists()]
    if present:
        raise BadInputError(
            f"{data_dir} already holds {', '.join(present)} that `galaxyzoo fetch` did not "
            "download. Rerun with --force to replace it, or choose another --data-dir."
        )


def fetch_kaggle(
    data_dir: str | os.PathLike[str],
    force: bool = False,
    keep_archives: bool = False,
    reporter: Reporter = SILENT,
) -> FetchResult:
    """Download, extract and verify the Kaggle competition data in ``data_dir``.

    Idempotent: a folder that a previous fetch completed and that still verifies is not touched
    (``skipped=True``), and needs neither credentials nor network. Resumable: a partial download is
    resumed and a complete download is reused. ``force`` starts over. ``keep_archives`` keeps the
    downloaded zip in ``data_dir/archives/`` (and a kept zip is reused instead of downloading).
    Raises :class:`BadInputError` (no credentials, rules not accepted, unsafe archive member, data
    from elsewhere in the folder) or :class:`JobFailedError` (network, unknown competition, corrupt
    or incomplete archive).
    """
    start = time.perf_counter()
    data_dir = Path(data_dir)
    state = data_dir / STATE_DIR
    download_dir = state / "download"
    kept = data_dir / ARCHIVES_DIR / ARCHIVE_NAME
    if force:
        shutil.rmtree(state, ignore_errors=True)
    else:
        report = _verified(data_dir)
        if report is None and (data_dir / MARKER).exists():
            reporter.log(f"{data_dir} no longer matches what was fetched; fetching again.")
        if report is not None:
            reporter.log(f"{data_dir} is complete and verified; not downloading again.")
            return FetchResult(
                data_dir, False, True, report, time.perf_counter() - start, _benchmarks(data_dir)
            )
        _refuse_foreign_data(data_dir)
    (data_dir / MARKER).unlink(missing_ok=True)  # from here on the folder is not complete

    done_file = download_dir / "complete.json"
    downloaded = False
    if not force and kept.is_file():
        archive = kept
        reporter.log(f"Using the kept archive {kept}.")
    elif not force and _download_complete(done_file):
        archive = download_dir / ARCHIVE_NAME
        reporter.log(f"Using the archive downloaded earlier ({archive}).")
    else:
        creds = find_credentials(reporter)
        reporter.log(f"Downloading {COMPETITION} with the kaggle client ({creds.source}).")
        archive = download_competition(download_dir, creds, force=force, reporter=reporter)
        write_json_atomic(done_file, {"file": archive.name, "size": archive.stat().st_size})
        downloaded = True

    work = state / "extract"
    shutil.rmtree(work, ignore_errors=True)  # a previous extraction may have been interrupted
    try:
        stats = extract_competition(archive, work, reporter)
    except CorruptArchiveError as e:
        shutil.rmtree(state, ignore_errors=True)
        if archive == kept:
            kept.unlink(missing_ok=True)
        raise JobFailedError(
            f"the downloaded archive is corrupt: {e}. Removed it; rerun `galaxyzoo fetch --force` "
            "to download it again."
        ) from None
    except BadInputError:
        shutil.rmtree(state, ignore_errors=True)
        raise
    missing = [
        what
        for what, ok in (
            (TRAIN_IMAGES, stats.n_train),
            (TEST_IMAGES, stats.n_test),
            (LABELS_CSV, stats.labels),
        )
        if not ok
    ]
    if missing:
        shutil.rmtree(state, ignore_errors=True)
        raise JobFailedError(
            f"the archive holds no {', '.join(missing)}. Rerun `galaxyzoo fetch --force`."
        )
    reporter.log(
        f"Extracted {stats.n_files:,} files in {stats.seconds:.1f} s; checking the layout."
    )
    install_entries(work, data_dir, (BENCHMARKS_DIR, TEST_IMAGES, TRAIN_IMAGES, LABELS_CSV))
    report = check_layout(data_dir, require_test=True)
    if (report.n_train_images, report.n_test_images) != (stats.n_train, stats.n_test):
        raise JobFailedError(
            f"{data_dir}: expected {stats.n_train:,} training and {stats.n_test:,} test images "
            f"from the archive, found {report.n_train_images:,} and {report.n_test_images:,}. "
            "Rerun `galaxyzoo fetch --force`."
        )
    kept_path = None
    if keep_archives:
        if archive != kept:
            kept.parent.mkdir(parents=True, exist_ok=True)
            os.replace(archive, kept)
        kept_path = kept
    elif archive == kept:
        kept.unlink()
        with contextlib.suppress(OSError):
            kept.parent.rmdir()  # only if empty
    shutil.rmtree(state, ignore_errors=True)
    write_json_atomic(
        data_dir / MARKER,
        {
            "competition": COMPETITION,
            "counts": {k: v for k, v in report.as_dict().items() if k != "data_dir"},
            "benchmarks": stats.benchmarks,
            "fetched_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        },
    )
    return FetchResult(
        data_dir,
        downloaded,
        False,
        report,
        time.perf_counter() - start,
        sorted(stats.benchmarks),
        kept_path,
    )


def _download_complete(done_file: Path) -> bool:
    """Whether an earlier run finished the download (size recorded after the client returned)."""
    try:
        done = json.loads(done_file.read_text(encoding="utf-8"))
        return (done_file.parent / done["file"]).stat().st_size == done["size"]
    except (OSError, ValueError, KeyError, TypeError):
        return False


def _benchmarks(data_dir: Path) -> list[str]:
    folder = data_dir / BENCHMARKS_DIR
    return sorted(p.name for p in folder.glob("*.csv")) if folder.is_dir() else []
