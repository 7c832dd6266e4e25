"""cluster.yaml is a valid Ray cluster-launcher config (Ray's own JSON schema) with the properties we promise."""
from __future__ import annotations

import importlib.metadata
import json
import re
from pathlib import Path

import pytest

yaml = pytest.importorskip("yaml")
jsonschema = pytest.importorskip("jsonschema")
ray = pytest.importorskip("ray")

CLUSTER_YAML = Path(__file__).parents[2] / "cluster.yaml"
CONSTRAINTS = Path(__file__).parents[2] / "constraints.txt"


@pytest.fixture(scope="module")
def cluster():
    return yaml.safe_load(CLUSTER_YAML.read_text())


def test_valid_against_rays_schema(cluster):
    schema = json.loads((Path(ray.__file__).parent / "autoscaler" / "ray-schema.json").read_text())
    jsonschema.validate(cluster, schema)
    broken = {**cluster, "available_node_types": {"x": {"node_config": {}}}}   # no resources: must fail
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, schema)


def test_accepted_by_rays_launcher_checks(cluster):
    """What `ray up` itself runs first: fill the defaults, then validate (a private Ray API: skipped if moved)."""
    util = pytest.importorskip("ray.autoscaler._private.util")
    if not hasattr(util, "prepare_config") or not hasattr(util, "validate_config"):
        pytest.skip("ray moved its launcher config helpers")
    util.validate_config(util.prepare_config(json.loads(json.dumps(cluster))))


def test_cpu_head_and_spot_gpu_workers(cluster):
    head = cluster["available_node_types"][cluster["head_node_type"]]
    assert head["resources"].get("GPU", 0) == 0
    workers = {name: t for name, t in cluster["available_node_types"].items() if name != cluster["head_node_type"]}
    assert len(workers) == 1
    (worker,) = workers.values()
    assert worker["resources"]["GPU"] == 1
    assert 0 <= worker["min_workers"] <= worker["max_workers"] <= cluster["max_workers"]
    assert worker["node_config"]["InstanceMarketOptions"]["MarketType"] == "spot"


def test_installs_the_project_and_keeps_the_dashboard_private(cluster):
    assert any("pip install" in c and "~/classweep" in c for c in cluster["setup_commands"])
    assert "~/classweep" in cluster["file_mounts"]
    head_start = " ".join(cluster["head_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in head_start and "0.0.0.0" not in head_start


def pins() -> dict[str, str]:
    """constraints.txt as {package: version}."""
    lines = (line.split("#")[0].strip() for line in CONSTRAINTS.read_text().splitlines())
    return dict(line.split("==") for line in lines if "==" in line)


def test_nodes_run_the_pinned_ray_on_a_python_the_pins_install_on(cluster):
    """Every node runs in Ray's image of the pinned Ray; its Python is one every pinned package installed here
    accepts (the launcher's default AMI has an older python3, on which the pinned numpy, pandas, ... do not
    install: `ray up` ended in pip's 'No matching distribution')."""
    specifiers = pytest.importorskip("packaging.specifiers")
    images = [cluster["docker"]["image"], cluster["docker"].get("head_image", cluster["docker"]["image"])]
    for image in images:
        match = re.fullmatch(r"rayproject/ray:(?P<ray>[\d.]+)-py(?P<major>\d)(?P<minor>\d+)-(?:cpu|gpu|cu\d+)", image)
        assert match, image
        assert match["ray"] == pins()["ray"]
        python = f"{match['major']}.{match['minor']}"
        refused = []
        for name in pins():
            try:
                requires = importlib.metadata.metadata(name).get("Requires-Python")
            except importlib.metadata.PackageNotFoundError:
                continue
            if requires and not specifiers.SpecifierSet(requires).contains(python):
                refused.append(f"{name} ({requires})")
        assert refused == [], f"{image}: Python {python} refused by {refused}"


def test_the_head_installs_what_the_autoscaler_and_the_job_api_need(cluster):
    """The head's autoscaler starts the GPU workers through boto3, and `ray dashboard` / `ray job submit` need
    Ray's dashboard (`ray[default]`); `pip install` of the project alone brings neither (no GPU worker ever came,
    no job could be submitted). Both installed with the tested pins."""
    head = [c for c in cluster["setup_commands"] + cluster["head_setup_commands"] if "pip install" in c]
    assert all("-c ~/classweep/constraints.txt" in c for c in head)
    installed = " ".join(head)
    assert '"ray[default]"' in installed and re.search(r"\bboto3\b", installed)


def test_no_secrets():
    text = CLUSTER_YAML.read_text()
    assert not re.search(r"AKIA[0-9A-Z]{16}|aws_secret|secret_access_key|ssh_private_key:|password", text, re.I)


def test_every_key_is_commented():
    lines = CLUSTER_YAML.read_text().splitlines()
    uncommented = []
    for number, line in enumerate(lines):
        stripped = line.strip()
        if stripped.startswith("#") or not re.match(r"^-?\s*[A-Za-z_][\w-]*:", stripped):
            continue
        previous = next((l.strip() for l in reversed(lines[:number]) if l.strip()), "")
        if not previous.startswith("#") and "#" not in line:
            uncommented.append(f"{number + 1}: {stripped}")
    assert uncommented == []
