"""Deploy smoke test: does the endpoint answer as the model was trained to be asked?

    python -m tools.smoke_test --endpoint NAME --model-dir MODEL_DIR [--region eu-west-1] [--photo FILE]
                               [--taxonomy classification/taxonomy.json] [--endpoint-url URL]

Sends two requests through boto3's `sagemaker-runtime` InvokeEndpoint (the Lambda's path) and prints one line per
check, then a verdict; exit code 0 when every check passes, 1 when one fails, 2 on a usage error:

1. constraint honoured - a forced-choice probe (the photo, `structured_outputs.choice` = one label that is not
   the model's answer) comes back as exactly that choice: the serving image applies structured outputs.
2. answer in taxonomy - the production request (classification.contract's `build_request`, the photo normalised
   by the Lambda's own classification.images.normalize) is answered with one of the taxonomy's choices.
3. logprobs present - both answers carry per-token logprobs, so the Lambda can compute a confidence.
4. prompt tokens match - the answer's `usage.prompt_tokens` equals the count the training processor (MODEL_DIR's
   tokenizer, chat template and image processor, the files training saved) gives for the same photo and prompt.
   A different tokenizer `legacy` flag, chat template or image processor (grid pinpoints) in the serving image
   changes that count, and would silently change what the model sees.
5. RoPE and vocabulary match - the `config.json` the endpoint mounts (DescribeEndpoint -> endpoint config ->
   each variant's model -> its S3 prefix), read the way transformers 4.x reads it and the way 5.x does, gives
   the RoPE theta and vocabulary size MODEL_DIR's config.json gives training's transformers. Neither number can
   be observed through InvokeEndpoint (SageMaker forwards only /invocations and /ping; no answer carries the
   engine's config), and the serving image derives both from that file alone, through whichever transformers
   it ships: a 5.x-only file would run under 4.x with theta 10,000 instead of 1,000,000, silently.

Every request is the served model's profile's (classification/model_profile.py: MODEL_DIR's model_profile.json, a
fine-tune without one), so a staged base model is checked with the base profile's question and BOS.
MODEL_DIR is a local copy of the served model's files without the weights, e.g.
`aws s3 sync s3://BUCKET/PREFIX/model/ DIR --exclude "*.safetensors"`. `--endpoint-url` points boto3 at another
server, e.g. the local engine (`python -m model_code.vllm_server`); `--served-config` then names the config.json
(or its folder) that server loaded, instead of the SageMaker lookup. Without `--photo` a generated 1600x1200 photo
is used (a 4:3 camera shape: the stock profile tiles it as a real one). Limits: one photo, one probe; it checks
the contract, not accuracy (training's metrics.json does that). Each request is billed as an endpoint invocation;
the lookup needs sagemaker:DescribeEndpoint/DescribeEndpointConfig/DescribeModel and s3:GetObject on the model.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from classification.contract import DEFAULT_TAXONOMY_PATH, InvalidAnswer, Taxonomy
from classification.images import InvalidImage, normalize
from classification.model_profile import FINE_TUNE, AnswerShape, InvalidProfile, ModelProfile, resolve_profile
from training_job.serving_export import text_geometry_4x, text_geometry_5x

GEOMETRY_CHECK = "RoPE and vocabulary match"


@dataclass(frozen=True)
class Check:
    name: str
    passed: bool
    detail: str

    def line(self) -> str:
        return f"{'PASS' if self.passed else 'FAIL'}  {self.name}: {self.detail}"


def default_photo(size: tuple[int, int] = (1600, 1200)) -> bytes:
    """A camera-shaped photo (a horizon gradient with a few blocks), generated so the tool needs no file."""
    from PIL import Image, ImageDraw

    width, height = size
    image = Image.new("RGB", size)
    draw = ImageDraw.Draw(image)
    for y in range(height):
        shade = int(80 + 150 * y / height)
        draw.line([(0, y), (width, y)], fill=(shade // 2, shade // 2 + 40, shade))
    for index in range(5):
        left = 100 + index * 290
        draw.rectangle([left, 600, left + 200, 1100], fill=(200 - index * 30, 120, 60 + index * 30))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def expected_prompt_tokens(
    model_dir: str | Path, taxonomy: Taxonomy, jpeg: bytes, profile: ModelProfile = FINE_TUNE
) -> int:
    """Prompt tokens the training processor produces for the production request's prompt and this photo."""
    from PIL import Image
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(str(model_dir))
    prefilled = profile.shape is AnswerShape.PREFILLED
    text = processor.apply_chat_template(
        profile.messages(taxonomy, {"type": "image"}),
        add_generation_prompt=not prefilled,
        continue_final_message=prefilled,
        tokenize=False,
    )
    # The chat template adds no BOS; vLLM adds one only when the profile's request asks (add_special_tokens).
    inputs = processor(
        text=text,
        images=[Image.open(io.BytesIO(jpeg)).convert("RGB")],
        add_special_tokens=profile.add_bos,
        return_tensors="np",
    )
    return int(inputs["input_ids"].shape[-1])


def _logprobs_ok(answer: Mapping[str, Any]) -> bool:
    try:
        tokens = answer["choices"][0]["logprobs"]["content"]
    except (KeyError, IndexError, TypeError):
        return False
    return bool(tokens) and all(isinstance(t.get("logprob"), (int, float)) and t["logprob"] <= 0 for t in tokens)


def _content(answer: Mapping[str, Any]) -> str | None:
    try:
        content = answer["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError):
        return None
    return content if isinstance(content, str) else None


def run_checks(
    invoke: Callable[[dict[str, Any]], dict[str, Any]],
    taxonomy: Taxonomy,
    jpeg: bytes,
    expected_tokens: int,
    profile: ModelProfile = FINE_TUNE,
) -> list[Check]:
    """The four checks of the module docstring; `invoke` sends one request and returns the JSON answer."""
    checks: list[Check] = []
    request = taxonomy.build_request(jpeg, profile=profile)
    answer = invoke(request)
    content = _content(answer)
    try:
        label = taxonomy.parse_response(answer, profile=profile).label
        checks.append(Check("answer in taxonomy", True, f"{content!r} names {label!r}"))
    except InvalidAnswer as error:
        label = None
        checks.append(Check("answer in taxonomy", False, str(error)))

    # Force a label the model did not pick: only the grammar can make the engine answer it.
    forced = profile.completion(taxonomy, next(other for other in taxonomy.labels if other != label))
    probe = invoke(request | {"structured_outputs": {"choice": [forced]}})
    probe_content = _content(probe)
    checks.append(
        Check(
            "constraint honoured",
            probe_content == forced,
            f"forced {forced!r}, got {probe_content!r}"
            + ("" if probe_content == forced else " (structured_outputs ignored by the serving image?)"),
        )
    )
    both = _logprobs_ok(answer) and _logprobs_ok(probe)
    tokens = answer.get("choices", [{}])[0].get("logprobs", {}) or {}
    count = len(tokens.get("content") or [])
    confidence = math.exp(sum(t["logprob"] for t in tokens["content"])) if both else None
    checks.append(
        Check(
            "logprobs present",
            both,
            f"{count} answer tokens, confidence {confidence:.3f}"
            if both
            else "an answer has no per-token logprobs",
        )
    )
    served = (answer.get("usage") or {}).get("prompt_tokens")
    checks.append(
        Check(
            "prompt tokens match",
            served == expected_tokens,
            f"endpoint counted {served}, the training processor {expected_tokens}"
            + ("" if served == expected_tokens else " (tokenizer, chat template or image processor differs)"),
        )
    )
    return checks


def served_model_uris(sagemaker: Any, endpoint: str) -> list[str]:
    """The S3 model location of every production variant the endpoint serves (ValueError if one has none)."""
    config_name = sagemaker.describe_endpoint(EndpointName=endpoint)["EndpointConfigName"]
    variants = sagemaker.describe_endpoint_config(EndpointConfigName=config_name)["ProductionVariants"]
    uris = []
    for variant in variants:
        model = sagemaker.describe_model(ModelName=variant["ModelName"])
        container = model.get("PrimaryContainer") or (model.get("Containers") or [{}])[0]
        source = (container.get("ModelDataSource") or {}).get("S3DataSource") or {}
        uri = source.get("S3Uri")
        if not uri or source.get("S3DataType") != "S3Prefix" or source.get("CompressionType") != "None":
            where = uri or container.get("ModelDataUrl") or "no location"
            raise ValueError(f"model {variant['ModelName']} is not served from an uncompressed S3 prefix: {where}")
        uris.append(uri)
    return uris


def read_s3_config(s3: Any, prefix_uri: str) -> dict[str, Any]:
    """`<prefix>config.json` of an s3://bucket/prefix/ model location."""
    bucket, _, prefix = prefix_uri.removeprefix("s3://").partition("/")
    key = prefix.rstrip("/") + "/config.json" if prefix else "config.json"
    return dict(json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read()))


def geometry_check(trained: Mapping[str, Any], served: Mapping[str, Mapping[str, Any]]) -> Check:
    """Check 5: every served config.json, as transformers 4.x and 5.x read it, against the trained one."""
    expected = text_geometry_5x(trained)
    problems = []
    for source, config in served.items():
        for reader, read in (("4.x", text_geometry_4x), ("5.x", text_geometry_5x)):
            seen = read(config)
            if seen != expected:
                problems.append(f"{source} under transformers {reader}: {seen.describe()}")
    if problems:
        return Check(
            GEOMETRY_CHECK,
            False,
            f"trained with {expected.describe()}, but "
            + "; ".join(problems)
            + " (export the model with training_job.serving_export, which writes both config shapes)",
        )
    where = ", ".join(served)
    return Check(GEOMETRY_CHECK, True, f"{expected.describe()} in {where}, read alike by transformers 4.x and 5.x")


def load_config(path: Path) -> dict[str, Any]:
    """A config.json, or the one in a model folder."""
    file = path / "config.json" if path.is_dir() else path
    return dict(json.loads(file.read_text(encoding="utf-8")))


def served_geometry_check(
    trained: Mapping[str, Any], *, served_config: Path | None, endpoint: str, region: str | None
) -> Check:
    """Check 5 against --served-config, or against what the endpoint's models mount (the SageMaker lookup)."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        if served_config is not None:
            served = {str(served_config): load_config(served_config)}
        else:
            import boto3

            sagemaker, s3 = boto3.client("sagemaker", region_name=region), boto3.client("s3", region_name=region)
            served = {uri: read_s3_config(s3, uri) for uri in served_model_uris(sagemaker, endpoint)}
        return geometry_check(trained, served)
    except (ClientError, BotoCoreError, OSError, ValueError, KeyError) as error:
        return Check(
            GEOMETRY_CHECK, False, f"cannot compare the config.json files: {error} (or pass --served-config)"
        )


def runtime_invoker(
    endpoint: str, *, region: str | None, endpoint_url: str | None
) -> Callable[[dict[str, Any]], dict[str, Any]]:
    import boto3

    client = boto3.client("sagemaker-runtime", region_name=region, endpoint_url=endpoint_url)

    def invoke(request: dict[str, Any]) -> dict[str, Any]:
        response = client.invoke_endpoint(
            EndpointName=endpoint,
            ContentType="application/json",
            Accept="application/json",
            Body=json.dumps(request, separators=(",", ":")).encode(),
        )
        return dict(json.loads(response["Body"].read()))

    return invoke


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.smoke_test",
        description="Check a deployed endpoint: structured outputs, logprobs, and the prompt token count the "
        "training processor gives for the same photo.",
    )
    parser.add_argument("--endpoint", required=True, help="SageMaker endpoint name")
    parser.add_argument("--model-dir", type=Path, required=True, help="local copy of the served model's files")
    parser.add_argument("--region", default=None, help="AWS region (default: the SDK's configuration)")
    parser.add_argument("--photo", type=Path, default=None, help="a photo file (default: a generated 4:3 photo)")
    parser.add_argument(
        "--taxonomy", type=Path, default=DEFAULT_TAXONOMY_PATH, help="the taxonomy the model serves"
    )
    parser.add_argument("--endpoint-url", default=None, help="send to this URL instead of AWS (a local engine)")
    parser.add_argument(
        "--served-config",
        type=Path,
        default=None,
        help="the config.json (or model folder) the endpoint serves, instead of the SageMaker/S3 lookup",
    )
    args = parser.parse_args(argv)
    for name in ("tokenizer_config.json", "config.json"):
        if not (args.model_dir / name).is_file():
            parser.error(f"--model-dir {args.model_dir} has no {name}: not a saved model's files")
    if args.served_config is not None and not args.served_config.exists():
        parser.error(f"--served-config {args.served_config} does not exist")
    if args.photo is not None and not args.photo.is_file():
        parser.error(f"--photo {args.photo} is not a file")
    try:
        taxonomy = Taxonomy.load(args.taxonomy)
        raw = args.photo.read_bytes() if args.photo is not None else default_photo()
        jpeg = normalize(raw).jpeg  # exactly what the Lambda sends for this photo
    except (InvalidImage, ValueError, OSError) as error:
        parser.error(str(error))
    if len(taxonomy.labels) < 2:
        parser.error("the taxonomy needs at least two labels to force one the model did not pick")

    from botocore.exceptions import BotoCoreError, ClientError

    try:
        profile = resolve_profile(args.model_dir)
    except InvalidProfile as error:
        parser.error(str(error))
    print(
        f"smoke test of endpoint {args.endpoint} ({len(taxonomy.labels)} labels, model files {args.model_dir}, "
        f"{profile.name} profile)"
    )
    expected = expected_prompt_tokens(args.model_dir, taxonomy, jpeg, profile)
    invoke = runtime_invoker(args.endpoint, region=args.region, endpoint_url=args.endpoint_url)
    try:
        checks = run_checks(invoke, taxonomy, jpeg, expected, profile)
    except (ClientError, BotoCoreError) as error:
        checks = [Check("invoke endpoint", False, str(error))]
    trained = load_config(args.model_dir)
    checks.append(
        served_geometry_check(
            trained, served_config=args.served_config, endpoint=args.endpoint, region=args.region
        )
    )
    for check in checks:
        print(check.line())
    failed = [check.name for check in checks if not check.passed]
    verdict = "PASSED" if not failed else "FAILED (" + ", ".join(failed) + ")"
    print(f"verdict: {verdict}: {len(checks) - len(failed)}/{len(checks)} checks passed")
    return 0 if not failed else 1


if __name__ == "__main__":
    sys.exit(main())
