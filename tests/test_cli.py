"""The command line, run as a user runs it: `python -m pipeline ...` in a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pipeline", *args],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_help_lists_the_subcommands():
    out = run("--help")
    assert out.returncode == 0
    for command in ("init", "chat", "personas"):
        assert command in out.stdout


def test_chat_prints_the_reply_and_what_it_cost(endpoints):
    out = run("chat", "--model", "primary", "Hello?")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "Primary answer."
    assert "[primary]" in out.stderr and "tokens" in out.stderr


def test_chat_reports_the_fallback(endpoints):
    primary, _ = endpoints
    primary.fail_next("401")
    out = run("chat", "--model", "primary", "--fallback", "backup", "Hello?")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "Backup answer."
    assert "[fell back] primary" in out.stderr


def test_chat_with_an_unconfigured_model_fails_with_a_message_not_a_traceback():
    out = run("chat", "--model", "anthropic/claude-haiku-4-5", "Hello?")
    assert out.returncode == 1
    assert "ANTHROPIC_API_KEY" in out.stderr and "Traceback" not in out.stderr


def test_init_then_personas_export_and_import(studio, tmp_path):
    assert run("init", "--skip-model").returncode == 0
    listing = run("personas", "list")
    assert listing.stdout.startswith("collaborative\t5 traits")

    exported = run("personas", "export", "collaborative")
    path = exported.stdout.strip()
    assert exported.returncode == 0 and path.endswith("collaborative.yaml")
    edited = tmp_path / "edited.yaml"
    edited.write_text(Path(path).read_text().replace("name: collaborative\n", "name: collaborative two\n", 1))
    imported = run("personas", "import", str(edited))
    assert imported.returncode == 0, imported.stderr
    assert "collaborative two" in run("personas", "list").stdout

    again = run("personas", "import", str(edited))
    assert again.returncode == 1 and "already exists" in again.stderr


def test_jobs_list_show_cancel_and_logs():
    from pipeline import jobs
    from pipeline.jobs import runfolder

    job = jobs.submit("probe", {"rate": 1}, name="nightly check")
    folder = runfolder.run_dir(job.id)
    folder.mkdir(parents=True)
    (folder / runfolder.LOG).write_text("line one\nline two\n")

    listing = run("jobs", "list")
    assert listing.returncode == 0 and f"#{job.id}" in listing.stdout and "nightly check" in listing.stdout
    shown = run("jobs", "show", str(job.id))
    assert "(probe), queued" in shown.stdout and '"rate": 1' in shown.stdout
    assert run("jobs", "logs", str(job.id), "--lines", "1").stdout.strip() == "line two"
    assert run("jobs", "cancel", str(job.id)).returncode == 0
    assert jobs.get(job.id).cancel_requested
    missing = run("jobs", "show", "999")
    assert missing.returncode == 1 and "There is no job 999" in missing.stderr


def test_generate_writes_the_three_files_and_can_resume(tmp_path):
    from tests.conftest import write_secrets
    from tests.fakes.openai_server import FakeOpenAI
    from tests.fakes.stage_replies import stage_aware

    with FakeOpenAI(responder=stage_aware) as server:
        write_secrets(f'[endpoints.writer]\napi_base = "{server.api_base}"\nmodel = "w"\n')
        output = tmp_path / "exports" / "collab_v3.jsonl"
        out = run(
            "generate", "--persona", "collaborative", "--examples", "3", "--model", "writer", "--output", str(output)
        )
        assert out.returncode == 0, out.stderr
        assert "succeeded: 3 examples ready, 0 failed" in out.stdout
        assert len(output.read_text().splitlines()) == 3
        assert (tmp_path / "exports" / "collab_v3_detailed.json").exists()
        assert (tmp_path / "exports" / "collab_v3_metadata.json").exists()
        assert "Job 1: generating" in out.stderr and "3/3 [" in out.stderr  # the tqdm bar

        again = run("generate", "--resume", "1")
        assert again.returncode == 0 and "3 examples ready" in again.stdout  # nothing left to do, nothing doubled
        assert "), succeeded" in run("jobs", "show", "1").stdout  # plain words


def test_generate_explains_bad_input_before_starting():
    assert "Give --persona NAME or --system-prompt TEXT" in run("generate", "--examples", "2").stderr
    zero = run("generate", "--persona", "collaborative", "--examples", "0")
    assert zero.returncode == 1 and "examples: Input should be greater than or equal to 1" in zero.stderr
    assert "There is no generation job 99" in run("generate", "--resume", "99").stderr


def test_import_transcripts_reports_each_file(tmp_path):
    good = tmp_path / "chat.txt"
    good.write_text("Sam: Can you look at my memo?\nAda: Gladly. What is it for?\n")
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    shots = tmp_path / "shots.json"
    out = run("import-transcripts", str(good), str(empty), "--persona", "collaborative", "--few-shot", str(shots))
    assert out.returncode == 1  # one file failed
    assert "chat.txt: 1 pairs added" in out.stdout
    assert "error: empty.txt is empty." in out.stderr
    assert [m["role"] for m in json.loads(shots.read_text())["messages"]] == ["user", "assistant"]


# --- datasets -----------------------------------------------------------------------------------

CORPUS = REPO / "tests" / "data" / "datasets"


def test_datasets_validate_prints_the_report_and_fails_on_errors():
    good = run("datasets", "validate", str(CORPUS / "good_openai.jsonl"))
    assert good.returncode == 0, good.stderr
    assert "12 valid, 0 invalid" in good.stdout and "billed tokens" in good.stdout and good.stdout.endswith("OK\n")
    bad = run("datasets", "validate", str(CORPUS / "bad_mixed.jsonl"))
    assert bad.returncode == 1
    assert "line 6 [messages[1].role] unknown_role" in bad.stdout


def test_datasets_validate_json_lists_each_error_with_line_field_and_kind():
    out = run(
        "datasets", "validate", str(CORPUS / "bad_mixed.jsonl"), "--json", "--base-model", "gpt-4o-mini-2024-07-18"
    )
    assert out.returncode == 1
    report = json.loads(out.stdout)
    assert (report["valid"], report["invalid"], report["ok"]) == (2, 10, False)
    first = report["problems"][0]
    assert (first["line"], first["field"], first["kind"]) == (3, "", "invalid_json")
    assert report["token_stats"]["examples"] == 2
    assert {b["base_model"] for b in report["backends"]} >= {"gpt-4o-mini-2024-07-18"}


def test_datasets_import_build_list_and_export(tmp_path):
    imported = run("datasets", "import", str(CORPUS / "good_openai.jsonl"), "--persona", "collaborative")
    assert imported.returncode == 0, imported.stdout + imported.stderr
    assert "12 added" in imported.stdout
    assert "flagged by the quality gate" in imported.stdout  # "Answer 3." shows none of the persona's markers
    built = run(
        "datasets", "build", "first", "--persona", "collaborative", "--status", "pending", "--include-flagged", "--json"
    )
    assert built.returncode == 0, built.stdout + built.stderr
    result = json.loads(built.stdout)
    assert result["counts"]["train"] + result["counts"]["validation"] == 12
    listed = json.loads(run("datasets", "list", "--json").stdout)
    assert [d["name"] for d in listed] == ["first"]
    target = tmp_path / "first.alpaca.jsonl"
    exported = run("datasets", "export", "first", "--format", "alpaca", "--output", str(target))
    assert exported.returncode == 0, exported.stderr
    rows = [json.loads(line) for line in target.read_text().splitlines()]
    assert len(rows) == result["counts"]["train"] and set(rows[0]) == {"instruction", "input", "output"}
    again = run("datasets", "build", "first", "--persona", "collaborative", "--status", "pending")
    assert again.returncode == 1 and "exists already" in again.stderr


def test_datasets_commands_explain_bad_input():
    missing = run("datasets", "validate", "no/such/file.jsonl")
    assert missing.returncode == 1 and "No such file" in missing.stderr
    model = run("datasets", "validate", str(CORPUS / "good_openai.jsonl"), "--base-model", "gpt-9")
    assert model.returncode == 1 and "Unknown base model" in model.stderr
