"""Atomic writes: permissions follow the umask, and a killed writer's staging is cleaned up."""

import os
import subprocess
import sys

import pytest

from descore_reward.atomic import atomic_directory, atomic_file, atomic_write_text


def test_outputs_follow_the_umask(tmp_path):
    previous = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "metrics.json", "{}")
        with atomic_directory(tmp_path / "checkpoint", marker="state.json") as staging:
            (staging / "state.json").write_text("{}")
    finally:
        os.umask(previous)
    assert (tmp_path / "metrics.json").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "checkpoint").stat().st_mode & 0o777 == 0o755


def test_every_file_of_a_saved_checkpoint_follows_the_umask(make_model, tmp_path):
    """safetensors writes its files 0600: another user could not load a shared checkpoint."""
    model = make_model()
    model.add_lora(rank=2)
    model.set_vision_trainable(True)
    previous = os.umask(0o022)
    try:
        model.save_pretrained(tmp_path / "model")
        with atomic_file(tmp_path / "video.mp4") as staging:
            staging.write_bytes(b"frames")
    finally:
        os.umask(previous)
    written = [p for p in (tmp_path / "model").rglob("*")]
    assert any(p.suffix == ".safetensors" for p in written) and (tmp_path / "model" / "adapter").is_dir()
    modes = {str(p.relative_to(tmp_path)): p.stat().st_mode & 0o777 for p in written}
    assert modes == {name: 0o755 if (tmp_path / name).is_dir() else 0o644 for name in modes}
    assert (tmp_path / "video.mp4").stat().st_mode & 0o777 == 0o644


def test_a_killed_writers_staging_is_removed_by_the_next_write(tmp_path):
    code = (
        "import os, sys\n"
        "from pathlib import Path\n"
        "from descore_reward.atomic import atomic_directory\n"
        "with atomic_directory(Path(sys.argv[1]), marker='state.json') as staging:\n"
        "    (staging / 'weights.bin').write_bytes(b'x' * 1000)\n"
        "    os.kill(os.getpid(), 9)\n"
    )
    target = tmp_path / "checkpoint-5"
    killed = subprocess.run([sys.executable, "-c", code, str(target)])
    assert killed.returncode == -9
    assert len(list(tmp_path.glob(".checkpoint-5.tmp-*"))) == 1, "the kill left its staging folder"
    live = tmp_path / f".checkpoint-5.tmp-{os.uname().nodename}-{os.getpid()}-abc"
    live.mkdir()  # a staging folder of a live process (this one) stays
    with atomic_directory(target, marker="state.json") as staging:
        (staging / "state.json").write_text("{}")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live.name, "checkpoint-5"])


def test_atomic_file_renames_on_success_and_keeps_the_old_file_on_error(tmp_path):

    target = tmp_path / "video.mp4"
    with atomic_file(target) as staging:
        assert staging.suffix == ".mp4" and staging.parent == tmp_path  # writers pick the format by extension
        staging.write_bytes(b"first")
    assert target.read_bytes() == b"first"
    with pytest.raises(RuntimeError), atomic_file(target) as staging:
        staging.write_bytes(b"torn")
        raise RuntimeError("encoder died")
    assert target.read_bytes() == b"first" and sorted(p.name for p in tmp_path.iterdir()) == ["video.mp4"]


def test_jsonl_logs_drop_a_torn_last_line_and_name_a_foreign_one(tmp_path):
    from descore_reward.atomic import append_jsonl, read_jsonl_log
    from descore_reward.errors import OutputFolderError

    log = tmp_path / "log.jsonl"
    assert read_jsonl_log(log) == []
    append_jsonl(log, [{"id": 1}, {"id": "é"}])
    with log.open("a") as file:
        file.write('{"id": 3, "tor')  # killed mid-write
    assert read_jsonl_log(log) == [{"id": 1}, {"id": "é"}]
    append_jsonl(log, [{"id": 3}])
    assert log.read_text(encoding="utf-8").splitlines() == ['{"id": 1}', '{"id": "é"}', '{"id": 3}']
    with log.open("a") as file:  # a torn row longer than any block the cut reads at a time
        file.write('{"id": 4, "cot": "' + "x" * 200_000)
    append_jsonl(log, [{"id": 4}])
    assert read_jsonl_log(log) == [{"id": 1}, {"id": "é"}, {"id": 3}, {"id": 4}]
    log.write_text('{"id": 1}\nnot json\n{"id": 2}\n')
    with pytest.raises(OutputFolderError, match=r"log.jsonl:2: not a JSON row"):
        read_jsonl_log(log)


def test_a_second_run_on_an_output_folder_is_refused_until_the_first_is_gone(tmp_path):
    import time

    from descore_reward.atomic import LOCK_NAME, claim_folder, release_folder
    from descore_reward.errors import OutputFolderError

    folder = tmp_path / "run"
    code = (
        "import sys, time\n"
        "from descore_reward.atomic import claim_folder\n"
        "claim_folder(sys.argv[1]); print('held', flush=True); time.sleep(60)\n"
    )
    first = subprocess.Popen([sys.executable, "-c", code, str(folder)], stdout=subprocess.PIPE, text=True)
    try:
        assert first.stdout.readline().strip() == "held"
        with pytest.raises(OutputFolderError, match=rf"in use by process {first.pid} .*choose another output folder"):
            claim_folder(folder)
    finally:
        first.kill()
        first.wait()
    time.sleep(0.1)
    claim_folder(folder)  # the first run died holding it: its lock is taken over
    claim_folder(folder)  # and this process may claim again what it holds
    release_folder(folder)
    assert not (folder / LOCK_NAME).exists()
    (tmp_path / "a-file").write_text("x")
    with pytest.raises(OutputFolderError, match="a-file: exists and is not a folder"):
        claim_folder(tmp_path / "a-file")
    with pytest.raises(OutputFolderError, match="a-file/run: cannot write there"):
        claim_folder(tmp_path / "a-file" / "run")
    read_only = tmp_path / "read-only"
    read_only.mkdir(mode=0o555)
    if os.geteuid() != 0:  # root writes anywhere
        with pytest.raises(OutputFolderError, match="cannot write there"):
            claim_folder(read_only / "run")
