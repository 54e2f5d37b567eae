"""Synth as an operator meets it: offline, checked by cdk-nag and cfn-lint, clear errors."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from aws_cdk import aws_s3 as s3

from infra.app import build_app
from infra.settings import ROOT, project_context
from tests.synth import Synth, synthesize

CDK = ROOT / "node_modules" / ".bin" / "cdk"


def offline_env(tmp_path: Path) -> dict[str, str]:
    """An environment with no way to reach AWS: no credentials, no config, no metadata."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("AWS_") and not key.startswith("CDK_")
    }
    env.update(
        AWS_CONFIG_FILE=str(tmp_path / "no-config"),
        AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "no-credentials"),
        AWS_EC2_METADATA_DISABLED="true",
        HOME=str(tmp_path),
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
    )
    return env


def run_cdk(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    if not CDK.exists():
        pytest.fail("the pinned CDK CLI is missing: run `make install` (npm ci)")
    return subprocess.run(
        [str(CDK), *args, "--no-notices", "--no-version-reporting"],
        cwd=ROOT,
        env=offline_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_cdk_synth_works_without_credentials_or_docker(tmp_path: Path) -> None:
    outdir = tmp_path / "out"
    result = run_cdk(tmp_path, "synth", "--quiet", "--output", str(outdir))
    assert result.returncode == 0, result.stderr
    template = json.loads((outdir / "berth.template.json").read_text())
    assert template["Resources"]
    manifest = json.loads((outdir / "manifest.json").read_text())
    assert not manifest.get("missing"), "synth needed a context lookup that is not committed"


def test_lookup_mode_synthesizes_offline_from_committed_context(tmp_path: Path) -> None:
    outdir = tmp_path / "out"
    result = run_cdk(
        tmp_path,
        "synth",
        "--quiet",
        "--output",
        str(outdir),
        "-c",
        "berth:vpc.mode=lookup",
        "-c",
        "berth:vpc.vpc_id=vpc-0a1b2c3d4e5f67890",
        "-c",
        "berth:env.account=111122223333",
        "-c",
        "berth:env.region=eu-west-1",
    )
    assert result.returncode == 0, result.stderr
    template = (outdir / "berth.template.json").read_text()
    assert "vpc-0a1b2c3d4e5f67890" in template
    assert "subnet-0aa1111111111111a" in template  # tasks run in the looked-up subnets
    assert "AWS::EC2::VPC" not in template.replace("AWS::EC2::VPCEndpoint", "")


@pytest.mark.parametrize(
    ("override", "line"),
    [
        (
            "berth:sessions.profiles.default.memory=-1",
            "berth: invalid setting 'sessions.profiles.default.memory': "
            "Input should be greater than 0 (got -1)",
        ),
        (  # a catalogue entry the jobs image has no runner for
            'berth:jobs.catalogue={"checksum": {"runtime": "lambda"}, '
            '"mine-bitcoin": {"runtime": "fargate"}}',
            "berth: invalid setting 'jobs.catalogue': no runner for 'mine-bitcoin' in "
            "containers/jobs/berth_jobs/catalog.py (JOBS)",
        ),
    ],
)
def test_bad_setting_fails_synth_with_one_line_naming_the_key(
    tmp_path: Path, override: str, line: str
) -> None:
    result = run_cdk(tmp_path, "synth", "-c", override)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = [text for text in result.stderr.splitlines() if text.startswith("berth:")]
    assert lines == [line]


def test_plain_python_app_reads_cdk_json_like_the_cli(tmp_path: Path) -> None:
    env = offline_env(tmp_path)
    env["CDK_OUTDIR"] = str(tmp_path / "out")
    env["CDK_CONTEXT_JSON"] = json.dumps(project_context())
    result = subprocess.run(
        [sys.executable, "app.py"], cwd=ROOT, env=env, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "out" / "berth.template.json").is_file()


def test_cfn_lint_finds_no_errors_or_warnings(synth: Synth) -> None:
    cfn_lint = shutil.which("cfn-lint", path=str(Path(sys.executable).parent))
    assert cfn_lint
    template = synth.outdir / "berth.template.json"
    result = subprocess.run(
        [cfn_lint, "--format", "parseable", str(template)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.stdout == "", result.stdout
    assert result.returncode == 0


def test_cdk_nag_reports_no_unacknowledged_findings(synth: Synth) -> None:
    report = json.loads((synth.outdir / "validation-report.json").read_text())
    violations = [
        violation
        for plugin in report.get("pluginReports", [])
        for violation in plugin.get("violations", [])
    ]
    assert violations == []


def test_cdk_nag_is_really_checking(tmp_path: Path) -> None:
    """A control: the same app plus one careless bucket must fail synth on AwsSolutions rules."""
    app, stack = build_app(project_context(), outdir=str(tmp_path))
    s3.Bucket(stack, "Careless")
    with pytest.raises(RuntimeError, match=r"ValidationFailed(.|\n)*AwsSolutions-S10"):
        app.synth()


def test_synth_in_lookup_mode_requires_an_environment(tmp_path: Path) -> None:
    from infra.settings import SettingsError

    context = project_context() | {"berth:vpc.mode": "lookup", "berth:vpc.vpc_id": "vpc-0123abcd"}
    with pytest.raises(SettingsError, match=r"needs env.account and env.region"):
        synthesize(context, tmp_path)
