"""`galaxyzoo fetch`: the real kaggle client end to end against a local fake Kaggle server."""

from __future__ import annotations

import importlib
import io
import json
import os
import stat
import time
import types
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fake_kaggle import FakeKaggle
from typer.testing import CliRunner

from galaxyzoo_cli.cli import app
from galaxyzoo_cli.core.errors import BadInputError
from galaxyzoo_cli.data import fetch
from galaxyzoo_cli.data.archive import extract_competition
from galaxyzoo_cli.data.catalogue import LABELS_CSV, TEST_IMAGES, TRAIN_IMAGES, write_labels

USERNAME = "galaxyfan"
KEY = "k3y-0f-the-fake-kaggle-4c1d9e2b7a"
TRAIN_IDS = list(range(100008, 100028))
TEST_IDS = list(range(200001, 200011))
BENCHMARKS = ["all_ones_benchmark", "all_zeros_benchmark", "central_pixel_benchmark"]
# One label row that obeys the decision tree (each question sums to its parent answer).
ROW = [
    0.6,
    0.4,
    0.0,
    0.1,
    0.3,
    0.1,
    0.2,
    0.15,
    0.15,
    0.0,
    0.1,
    0.1,
    0.1,
    0.2,
    0.8,
    0.2,
    0.2,
    0.2,
    0.2,
    0,
    0,
    0,
    0,
    0,
    0,
    0.1,
    0,
    0,
    0.05,
    0.05,
    0.05,
    0,
    0.15,
    0,
    0,
    0,
    0,
]


def _zip(members: dict[str, bytes], compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression) as zf:
        for name, data in members.items():
            zf.writestr(zipfile.ZipInfo(name, (2014, 4, 4, 0, 0, 0)), data)
    return buf.getvalue()


def _jpeg(seed: int) -> bytes:
    from PIL import Image

    pixels = np.random.default_rng(seed).integers(0, 255, (16, 16, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "JPEG")
    return buf.getvalue()


def build_archive(tmp: Path, extra: dict[str, bytes] | None = None) -> bytes:
    """The competition zip with the real nesting; folder depths vary on purpose."""
    assert len(ROW) == 37
    csv_path = tmp / LABELS_CSV
    write_labels(csv_path, np.array(TRAIN_IDS), np.tile(ROW, (len(TRAIN_IDS), 1)))
    inner = {
        "images_training_rev1.zip": _zip(
            {f"images_training_rev1/{i}.jpg": _jpeg(i) for i in TRAIN_IDS}
        ),
        "images_test_rev1.zip": _zip({f"{i}.jpg": _jpeg(i) for i in TEST_IDS}),
        "training_solutions_rev1.zip": _zip({LABELS_CSV: csv_path.read_bytes()}),
        **{
            f"{b}.zip": _zip({f"{b}/{b}.csv": b"GalaxyID,Class1.1\n100008,1\n"}) for b in BENCHMARKS
        },
        **(extra or {}),
    }
    return _zip(inner, zipfile.ZIP_STORED)


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return build_archive(tmp_path_factory.mktemp("archive"))


@pytest.fixture
def kaggle_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Fake credentials; HOME and KAGGLE_CONFIG_DIR in tmp so the real ~/.kaggle is never used."""
    for var in list(os.environ):
        if var.startswith(("KAGGLE_", "GALAXYZOO_")) or var in ("VERBOSE", "VERBOSE_OUTPUT"):
            monkeypatch.delenv(var)
    home = tmp_path / "home"
    (home / ".kaggle").mkdir(parents=True)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(home / ".kaggle"))
    monkeypatch.setenv("KAGGLE_USERNAME", USERNAME)
    monkeypatch.setenv("KAGGLE_KEY", KEY)
    return home


@pytest.fixture
def server(
    archive: bytes, kaggle_env: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[FakeKaggle]:
    # kaggle 2.x has no endpoint setting; the client reads this table on every call.
    from kagglesdk.kaggle_env import KaggleEnv, _env_to_endpoint

    with FakeKaggle(archive, fetch.COMPETITION, USERNAME, KEY) as fake:
        monkeypatch.setitem(_env_to_endpoint, KaggleEnv.PROD, fake.url)
        yield fake


def run_cli(*args: str) -> tuple[int, str, str]:
    """Run `galaxyzoo ARGS`; return (exit code, stdout, stderr), checking the key never shows."""
    result = CliRunner().invoke(app, list(args))
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    for text in (result.stdout, result.stderr):
        assert KEY not in text
        assert "Traceback" not in text
    return result.exit_code, result.stdout, result.stderr


def names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def assert_fetched(data: Path) -> None:
    assert names(data / TRAIN_IMAGES) == [f"{i}.jpg" for i in TRAIN_IDS]
    assert names(data / TEST_IMAGES) == [f"{i}.jpg" for i in TEST_IDS]
    assert (data / LABELS_CSV).is_file()
    assert names(data / "benchmarks") == [f"{b}.csv" for b in BENCHMARKS]
    assert (data / fetch.MARKER).is_file()
    assert not (data / fetch.STATE_DIR).exists()
    assert not list(data.rglob("*.zip"))


def test_fetch_downloads_extracts_and_verifies(server: FakeKaggle, tmp_path: Path) -> None:
    data = tmp_path / "data"
    code, out, err = run_cli("fetch", "--data-dir", str(data), "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["downloaded"] is True and result["skipped"] is False
    assert (result["n_train_images"], result["n_test_images"], result["n_labels"]) == (20, 10, 20)
    assert result["matches_kaggle_counts"] is False
    assert_fetched(data)
    post = server.requests[0]
    assert json.loads(post.body) == {"competitionName": fetch.COMPETITION}


def test_rerun_skips_without_network_or_credentials(
    server: FakeKaggle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tmp_path / "data"
    assert run_cli("fetch", "--data-dir", str(data))[0] == 0
    server.requests.clear()
    monkeypatch.delenv("KAGGLE_KEY")
    code, out, err = run_cli("fetch", "--data-dir", str(data))
    assert code == 0, err
    assert "nothing to do" in out and "not downloading again" in err
    assert server.requests == []


def test_force_downloads_again_and_keep_archives(server: FakeKaggle, tmp_path: Path) -> None:
    data = tmp_path / "data"
    assert run_cli("fetch", "--data-dir", str(data))[0] == 0
    server.requests.clear()
    code, out, err = run_cli("fetch", "--data-dir", str(data), "--force", "--keep-archives")
    assert code == 0, err
    assert len(server.archive_requests()) == 1
    assert (data / "archives" / fetch.ARCHIVE_NAME).read_bytes() == server.archive
    assert "Kept the archive" in out


def test_rules_not_accepted_is_bad_input_with_rules_url(server: FakeKaggle, tmp_path: Path) -> None:
    server.error = (
        403,
        "You must accept this competition's rules before you'll be able to download files.",
    )
    code, _, err = run_cli("fetch", "--data-dir", str(tmp_path / "data"))
    assert code == 2
    assert fetch.RULES_URL in err and "accept" in err
    assert not (tmp_path / "data" / fetch.MARKER).exists()


def test_unknown_competition_fails_the_job(server: FakeKaggle, tmp_path: Path) -> None:
    server.competition = "some-other-competition"
    code, _, err = run_cli("fetch", "--data-dir", str(tmp_path / "data"))
    assert code == 1
    assert "does not know the competition" in err and "404" in err


def test_missing_credentials_explain_how_to_provide_them(
    server: FakeKaggle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KAGGLE_USERNAME")
    monkeypatch.delenv("KAGGLE_KEY")
    code, out, err = run_cli("fetch", "--data-dir", str(tmp_path / "data"))
    assert code == 2
    for hint in (
        "KAGGLE_USERNAME",
        "KAGGLE_KEY",
        "KAGGLE_API_TOKEN",
        "kaggle.json",
        fetch.TOKEN_URL,
        "chmod 600",
    ):
        assert hint in err
    assert out == ""
    assert server.requests == []


def test_kaggle_json_is_used_and_loose_permissions_warned(
    server: FakeKaggle, kaggle_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KAGGLE_USERNAME")
    monkeypatch.delenv("KAGGLE_KEY")
    config = kaggle_env / ".kaggle" / "kaggle.json"
    config.write_text(json.dumps({"username": USERNAME, "key": KEY}))
    config.chmod(0o644)
    code, _, err = run_cli("fetch", "--data-dir", str(tmp_path / "data"))
    assert code == 0, err
    assert f"chmod 600 {config}" in err
    config.chmod(stat.S_IRUSR | stat.S_IWUSR)
    assert "chmod" not in run_cli("fetch", "--data-dir", str(tmp_path / "d2"))[2]


def test_interrupted_transfer_is_resumed_with_a_range_request(
    server: FakeKaggle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `import kaggle.api.…` would not do: the package's `api` attribute is a KaggleApi instance.
    client = importlib.import_module("kaggle.api.kaggle_api_extended")
    # The client retries 5 times with exponential back-off; skip the sleeping.
    monkeypatch.setattr(
        client, "time", types.SimpleNamespace(sleep=lambda s: None, mktime=time.mktime)
    )
    # The client writes 1 MiB chunks, so make the archive big enough for one to land first.
    server.archive = build_archive(tmp_path, extra={"padding.bin": os.urandom(3 << 20)})
    data = tmp_path / "data"
    server.cut_transfers, server.fail_transfers = 1, 5  # cut midway, then the network stays down
    code, _, err = run_cli("fetch", "--data-dir", str(data))
    assert code == 1
    assert "rerun to resume" in err
    partial = data / fetch.STATE_DIR / "download" / fetch.ARCHIVE_NAME
    done = partial.stat().st_size
    assert 0 < done < len(server.archive)
    assert not (data / TRAIN_IMAGES).exists() and not (data / fetch.MARKER).exists()

    server.requests.clear()
    code, _, err = run_cli("fetch", "--data-dir", str(data))
    assert code == 0, err
    ranges = [r.headers.get("Range") for r in server.archive_requests()]
    assert f"bytes={done}-" in ranges
    assert_fetched(data)


def test_corrupt_archive_fails_and_is_removed(server: FakeKaggle, tmp_path: Path) -> None:
    good = server.archive
    server.archive = b"PK\x03\x04" + b"\x00" * 200  # a zip signature, then nothing usable
    data = tmp_path / "data"
    code, _, err = run_cli("fetch", "--data-dir", str(data))
    assert code == 1
    assert "corrupt" in err and "--force" in err
    assert not (data / fetch.STATE_DIR).exists()
    server.archive = good
    assert run_cli("fetch", "--data-dir", str(data), "--force")[0] == 0
    assert_fetched(data)


def test_member_escaping_the_folder_is_refused(server: FakeKaggle, tmp_path: Path) -> None:
    server.archive = build_archive(
        tmp_path, extra={"images_test_rev1.zip": _zip({"../evil.jpg": b"x", "1.jpg": b"y"})}
    )
    data = tmp_path / "deep" / "data"
    code, _, err = run_cli("fetch", "--data-dir", str(data))
    assert code == 2
    assert "'../evil.jpg'" in err
    assert not list(tmp_path.rglob("evil.jpg"))
    assert not (data / TRAIN_IMAGES).exists()


def test_data_from_elsewhere_is_not_replaced_without_force(
    server: FakeKaggle, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / LABELS_CSV).write_text("mine")
    code, _, err = run_cli("fetch", "--data-dir", str(data))
    assert code == 2 and "--force" in err
    assert (data / LABELS_CSV).read_text() == "mine"
    assert server.requests == []


# ------------------------------------------------------------------------------------------
# Extraction alone
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "member, problem",
    [
        ("../evil.jpg", "'..'"),
        ("images_training_rev1/../../evil.jpg", "'..'"),
        ("/tmp/evil.jpg", "absolute"),
        ("C:\\evil.jpg", "absolute"),
    ],
)
def test_unsafe_member_names_are_refused(tmp_path: Path, member: str, problem: str) -> None:
    archive = tmp_path / "a.zip"
    archive.write_bytes(_zip({"images_training_rev1.zip": _zip({member: b"x", "1.jpg": b"y"})}))
    with pytest.raises(BadInputError, match=problem) as e:
        extract_competition(archive, tmp_path / "out")
    assert repr(member) in str(e.value)
    assert not (tmp_path / "out" / TRAIN_IMAGES).exists()


def test_symlink_member_is_refused(tmp_path: Path) -> None:
    link = zipfile.ZipInfo("images_training_rev1/100008.jpg")
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr(link, "/etc/passwd")
    archive = tmp_path / "a.zip"
    archive.write_bytes(buf.getvalue())
    with pytest.raises(BadInputError, match="symlink"):
        extract_competition(archive, tmp_path / "out")


def test_extraction_finds_files_at_any_depth(tmp_path: Path) -> None:
    deep = _zip(
        {
            "foo/images_training_rev1/100008.jpg": b"a",
            "__MACOSX/images_training_rev1/._100009.jpg": b"junk",
            "readme.txt": b"hi",
        }
    )
    twice = _zip({"images_test_rev1.zip": _zip({"x/200001.jpg": b"b", "200002.JPG": b"c"})})
    archive = tmp_path / "a.zip"
    archive.write_bytes(
        _zip(
            {
                "data/train.zip": deep,
                "data/images_test_rev1.zip": twice,
                "labels.zip": _zip({"a/b/c/training_solutions_rev1.csv": b"csv"}),
            }
        )
    )
    stats = extract_competition(archive, tmp_path / "out")
    out = tmp_path / "out"
    assert (stats.n_train, stats.n_test, stats.labels) == (1, 2, True)
    assert (out / TRAIN_IMAGES / "100008.jpg").read_bytes() == b"a"
    assert sorted(p.name for p in (out / TEST_IMAGES).iterdir()) == ["200001.jpg", "200002.JPG"]
    assert (out / LABELS_CSV).read_bytes() == b"csv"
    assert sorted(p.name for p in out.iterdir()) == [TEST_IMAGES, TRAIN_IMAGES, LABELS_CSV]


def test_scrub_removes_key_and_signed_query() -> None:
    creds = fetch.Credentials("env", Path("."), (KEY,))
    text = fetch._scrub(f"failed for url: https://x.org/f.zip?sig={KEY}&a=1 key {KEY}", creds)
    assert KEY not in text and "sig=" not in text


def test_no_home_folder_still_finds_environment_credentials(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Batch jobs and containers may run without HOME (and without a passwd entry): the lookup
    of ~/.kaggle must not raise there."""
    import pathlib

    from galaxyzoo_cli.data import fetch

    monkeypatch.delenv("HOME", raising=False)
    monkeypatch.delenv("KAGGLE_CONFIG_DIR", raising=False)
    monkeypatch.delenv("KAGGLE_API_TOKEN", raising=False)
    monkeypatch.setenv("KAGGLE_USERNAME", "someone")
    monkeypatch.setenv("KAGGLE_KEY", "0123456789abcdef")

    def no_home(*_: object) -> pathlib.Path:
        raise RuntimeError("Could not determine home directory.")

    monkeypatch.setattr(pathlib.Path, "expanduser", lambda self: no_home())
    monkeypatch.setattr(pathlib.Path, "home", classmethod(lambda cls: no_home()))
    monkeypatch.setattr("os.path.expanduser", lambda p: p)  # what it does without a home
    assert fetch.kaggle_config_dir().name in (".kaggle", "kaggle")
    assert fetch.find_credentials().source.startswith("KAGGLE_USERNAME")
