"""The labelling job's parts without an engine: where SageMaker puts things, the checkpoint files, the entry point,
and the offline engine's outputs turned into the server's chat-completion shape."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from jobkit import JOB_ENVIRON
from labeller_testkit import TABLE
from window_files import JobSummary

from classification.contract import Taxonomy
from labelling_job.engine import MIN_LOGPROB, chat_options, chat_response
from labelling_job.job_environment import JobConfigError, JobEnvironment
from labelling_job.progress import Progress
from stacks.common.constants import CLASSIFICATION_DIR
from stacks.labelling.job_code import BOOTSTRAP, ENTRYPOINT, source_files


def opt_ml(root: Path, *, hosts: list[str] | None = None) -> Path:
    """A SageMaker-shaped /opt/ml: resourceconfig.json as the platform writes it, the two data channels."""
    config = root / "input" / "config"
    config.mkdir(parents=True)
    resource = {"current_host": "algo-2", "hosts": hosts or ["algo-1", "algo-2"], "network_interface_name": "eth0"}
    (config / "resourceconfig.json").write_text(json.dumps(resource))
    (root / "input" / "data" / "manifest" / "nested").mkdir(parents=True)
    (root / "input" / "data" / "model").mkdir(parents=True)
    (root / "input" / "data" / "model" / "config.json").write_text("{}")
    return root


def test_on_sagemaker_the_job_reads_resourceconfig_and_the_channel_folders(tmp_path: Path) -> None:
    # Given the files SageMaker provides (no SM_* variables: the LMI image has no training toolkit)
    root = opt_ml(tmp_path)
    (root / "input" / "data" / "manifest" / "nested" / "shard-00001.jsonl").write_text("")
    (root / "input" / "data" / "manifest" / "shard-00000.jsonl").write_text("")
    (root / "input" / "data" / "manifest" / "README").write_text("not a shard")
    # When the job reads its environment
    job = JobEnvironment.from_environ(
        {**JOB_ENVIRON, "LABELLING_ROOT": str(root), "TRAINING_JOB_NAME": "photo-labeler-label-1"}
    )
    # Then it knows its host among the hosts, its channels, its shards, the checkpoint folder and the labeller's
    # settings (the window's variables, scheduled mode)
    assert (job.current_host, job.hosts, job.job_name) == ("algo-2", ("algo-1", "algo-2"), "photo-labeler-label-1")
    assert (job.labeller.endpoint_mode, job.labeller.table_name) == ("scheduled", TABLE)
    shards = [path.relative_to(job.manifest_dir).as_posix() for path in job.manifest_files()]
    assert shards == ["nested/shard-00001.jsonl", "shard-00000.jsonl"]
    assert job.checkpoint_dir == root / "checkpoints"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda root: (root / "input" / "config" / "resourceconfig.json").unlink(), "SM_CURRENT_HOST unset"),
        (lambda root: (root / "input" / "data" / "model" / "config.json").unlink(), "holds no saved model"),
        (lambda root: (root / "input" / "data" / "manifest" / "nested").rename(root / "x"), None),
    ],
)
def test_a_missing_input_is_named_in_one_line(tmp_path: Path, change: object, message: str | None) -> None:
    root = opt_ml(tmp_path)
    change(root)  # type: ignore[operator]
    if message is None:  # an empty manifest channel is a valid (empty) shard set
        assert JobEnvironment.from_environ({**JOB_ENVIRON, "LABELLING_ROOT": str(root)}).manifest_files() == []
        return
    with pytest.raises(JobConfigError, match=message):
        JobEnvironment.from_environ({**JOB_ENVIRON, "LABELLING_ROOT": str(root)})


def test_sm_variables_win_and_a_host_outside_the_hosts_is_refused(tmp_path: Path) -> None:
    root = opt_ml(tmp_path)
    local = {**JOB_ENVIRON, "LABELLING_ROOT": str(root), "SM_CURRENT_HOST": "algo-1", "SM_HOSTS": '["algo-1"]'}
    assert JobEnvironment.from_environ(local).hosts == ("algo-1",)
    with pytest.raises(JobConfigError, match="not among the hosts"):
        JobEnvironment.from_environ({**local, "SM_CURRENT_HOST": "algo-9"})


def test_the_checkpoint_unions_every_hosts_batches_and_ignores_half_written_files(tmp_path: Path) -> None:
    # Given two hosts' committed batches and a file another host was still writing when the job stopped
    one, two = Progress(tmp_path, "algo-1"), Progress(tmp_path, "algo-2")
    one.commit([("s3://b/a.jpg", "e1", "LABELED")])
    two.commit([("s3://b/b.jpg", "e2", "REJECTED"), ("s3://b/c.jpg", "e3", "MISSING")])
    (tmp_path / "done" / "algo-2-000001.json.partial").write_text('[["s3://b/d.jpg", "e4", "LA')
    (tmp_path / "done" / "algo-2-000002.json").write_text('[["s3://b/e.jpg", "e5"')  # torn by a sync
    # When a restarted host reads them
    finished = Progress(tmp_path, "algo-1").finished()
    # Then it skips exactly the committed photo versions, whichever host labelled them
    assert finished == {("s3://b/a.jpg", "e1"), ("s3://b/b.jpg", "e2"), ("s3://b/c.jpg", "e3")}
    # and its next batch file does not overwrite its earlier one
    assert Progress(tmp_path, "algo-1").commit([]).name == "algo-1-000001.json"


def test_a_restarted_host_adds_to_its_earlier_counts(tmp_path: Path) -> None:
    progress = Progress(tmp_path, "algo-1")
    assert progress.load_summary() == JobSummary(host="algo-1")
    progress.save_summary(JobSummary(host="algo-1", labeled=3, inferred=4, attempts=1))
    assert Progress(tmp_path, "algo-1").load_summary().inferred == 4


def test_the_entry_point_fits_sagemakers_limit_and_runs_the_job_from_the_code_channel(tmp_path: Path) -> None:
    # ContainerEntrypoint: at most 100 items of at most 256 characters each (CreateTrainingJob API reference,
    # AlgorithmSpecification: https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_AlgorithmSpecification.html)
    assert len(ENTRYPOINT) <= 100 and all(len(item) <= 256 for item in ENTRYPOINT)
    # Given a code channel holding a zip whose labelling_job.run only reports where it runs from
    code = tmp_path / "input" / "data" / "code"
    code.mkdir(parents=True)
    with zipfile.ZipFile(code / "0123abcd.zip", "w") as packed:
        packed.writestr("labelling_job/__init__.py", "")
        packed.writestr(
            "labelling_job/run.py", "import sys, pathlib\nprint(pathlib.Path(__file__).parent, sys.argv)"
        )
    # When the container starts with the entry point
    result = subprocess.run(
        [sys.executable, "-c", BOOTSTRAP],
        env={"LABELLING_ROOT": str(tmp_path)},
        capture_output=True,
        text=True,
        check=False,
    )
    # Then the code is unpacked under the root's code/ and the module runs as __main__
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(str(tmp_path / "code" / "labelling_job"))


def test_the_stacks_modules_the_bundle_carries_are_all_the_engine_needs(tmp_path: Path) -> None:
    # Given only what the job's bundle holds of stacks/ and model_code/, laid out as the bundle lays it out
    for source, target in source_files(CLASSIFICATION_DIR / "taxonomy.json"):
        if target.startswith(("stacks/", "model_code/")):
            (tmp_path / target).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / target).write_bytes(source.read_bytes())
    # When an isolated interpreter (no working directory or PYTHONPATH on its path) imports what engine.py imports
    # from the bundle and reads serving.properties as the job does
    code = (
        f"import sys; sys.path.insert(0, {str(tmp_path)!r})\n"
        "from stacks.serving import serving_properties\n"
        "properties = serving_properties.load()\n"
        "print(serving_properties.__file__, len(properties), any('cdk' in m for m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-I", "-c", code], cwd=tmp_path, capture_output=True, text=True)
    # Then every module it needs is in the bundle, serving.properties is found beside them, and no CDK was needed
    assert result.returncode == 0, result.stderr
    module, count, cdk = result.stdout.split()
    assert module == str(tmp_path / "stacks" / "serving" / "serving_properties.py")
    assert int(count) > 0 and cdk == "False"


@dataclass
class _Logprob:
    logprob: float
    decoded_token: str


@dataclass
class _Completion:
    text: str
    token_ids: list[int]
    logprobs: list[dict[int, _Logprob]] | None
    finish_reason: str = "stop"


@dataclass
class _Output:
    outputs: list[_Completion] = field(default_factory=list)


def test_an_engine_output_becomes_the_servers_response_and_parses_to_the_same_confidence() -> None:
    # Given an offline output: three tokens, the last one (EOS) forced by the grammar, top-2 alternatives kept
    steps = [
        {5: _Logprob(-0.1, " this"), 9: _Logprob(-2.4, " that")},
        {7: _Logprob(-0.2, " Pool"), 8: _Logprob(-1.8, " Bar")},
        {2: _Logprob(0.0, "</s>")},
    ]
    output = _Output([_Completion(" this is a photo of Pool.", [5, 7, 2], steps)])
    # When it is turned into a chat completion with top_logprobs=1, as the Lambda's request asks
    response = chat_response(output, 1)
    # Then it has the server's shape: the text, one entry per generated token (EOS included), one alternative each
    choice = response["choices"][0]
    assert choice["message"]["content"] == " this is a photo of Pool."
    assert [entry["logprob"] for entry in choice["logprobs"]["content"]] == [-0.1, -0.2, 0.0]
    assert [len(entry["top_logprobs"]) for entry in choice["logprobs"]["content"]] == [1, 1, 1]
    # and the contract's parser reads the label and the product of the probabilities from it
    prediction = Taxonomy(("Pool", "Bar")).parse_response(response)
    assert prediction.label == "Pool" and math.isclose(prediction.confidence or 0, math.exp(-0.3))


def test_a_token_without_its_logprob_gets_the_servers_placeholder() -> None:
    output = _Output([_Completion(" this is a photo of Bar.", [4], [{1: _Logprob(-0.5, "x")}])])
    entry = chat_response(output, 1)["choices"][0]["logprobs"]["content"][0]
    assert entry["logprob"] == MIN_LOGPROB  # vLLM's ChatCompletionLogProb default: the confidence becomes ~0


def test_a_vllm_class_is_found_where_its_release_keeps_it() -> None:
    from labelling_job.engine import _vllm_class

    # The first module that has it wins; a name no module has is named in the error
    assert _vllm_class(("no.such.module", "json"), "dumps") is json.dumps
    with pytest.raises(ImportError, match="no Nothing in any of json"):
        _vllm_class(("json",), "Nothing")


@dataclass
class _Request:
    """The fields of vLLM's ChatCompletionRequest that decide how a conversation is rendered (their defaults)."""

    add_generation_prompt: bool = True
    continue_final_message: bool = False
    add_special_tokens: bool = False


def test_the_engine_renders_each_profiles_request_as_the_server_would() -> None:
    # A fine-tune's requests: vLLM's chat defaults (no BOS, a generation prompt)
    assert chat_options([_Request(), _Request()]) == {
        "add_generation_prompt": True,
        "continue_final_message": False,
        "tokenization_kwargs": {"add_special_tokens": False},
    }
    # The prefilled base profile's: BOS, the final (assistant) message continued
    prefilled = _Request(add_generation_prompt=False, continue_final_message=True, add_special_tokens=True)
    assert chat_options([prefilled]) == {
        "add_generation_prompt": False,
        "continue_final_message": True,
        "tokenization_kwargs": {"add_special_tokens": True},
    }
    # One engine call renders alike: requests of two profiles are refused rather than rendered wrong
    with pytest.raises(ValueError, match="different profiles"):
        chat_options([_Request(), prefilled])


def test_a_model_whose_profile_record_names_no_profile_stops_the_job_before_the_engine(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from labelling_job import run

    # Given a model channel whose model_profile.json names an unknown profile
    root = opt_ml(tmp_path)
    (root / "input" / "data" / "model" / "model_profile.json").write_text('{"profile": "tuned"}')

    # When the job starts, Then it stops in one line, before loading anything (a guessed profile would ask the
    # model the wrong question)
    assert run.main(["--device", "cpu"], environ={**JOB_ENVIRON, "LABELLING_ROOT": str(root)}) == 1
    assert capsys.readouterr().err.strip() == (
        "labelling job not started: unknown model profile 'tuned'; known: fine-tune, base, base-prefilled"
    )


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"TABLE_NAME": ""}, "environment variables not set: TABLE_NAME"),
        ({"CONFIDENCE_THRESHOLD": "1.5"}, "CONFIDENCE_THRESHOLD must be within [0, 1], got 1.5"),
        (
            {"ENDPOINT_MODE": "realtime", "ENDPOINT_NAME": "photo-labeler"},
            "the labelling job needs ENDPOINT_MODE=scheduled, got realtime",
        ),
    ],
)
def test_a_bad_labeller_variable_stops_the_job_in_one_line_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], change: dict[str, str], message: str
) -> None:
    from labelling_job import run

    # Given the window's channels, and its labeller variables with one missing, malformed or of another mode
    root = opt_ml(tmp_path)
    # When the job starts, Then it stops before loading anything, naming the variable
    assert run.main(["--device", "cpu"], environ={**JOB_ENVIRON, **change, "LABELLING_ROOT": str(root)}) == 1
    assert capsys.readouterr().err.strip() == f"labelling job not started: {message}"


def test_the_job_reads_its_own_process_environment(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from labelling_job import run

    # Given the container's environment (no `environ` handed in) naming a model whose profile is unknown
    root = opt_ml(tmp_path)
    (root / "input" / "data" / "model" / "model_profile.json").write_text('{"profile": "tuned"}')
    for name, value in {**JOB_ENVIRON, "LABELLING_ROOT": str(root)}.items():
        monkeypatch.setenv(name, value)
    # When the job starts, Then it got as far as the model's profile: its channels and settings came from there
    assert run.main(["--device", "cpu"]) == 1
    assert "unknown model profile 'tuned'" in capsys.readouterr().err
