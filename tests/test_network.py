"""Nothing in wsi/, scripts/ or bench/ opens a network connection.

The processes are checked where they run: tests/test_demo.py runs every stage of the demo, and
tests/test_runtime.py OpenVINO's pass, under tests/network_guard (any AF_INET/AF_INET6 connect or send, or a
host-name lookup, ends the process). This test covers the code those runs do not reach: no module or script
calls an API that downloads or connects (model zoos and hubs included: the networks start from their own
initialisation or a checkpoint file the user gives).
"""

import re

from tests.helpers import ROOT

PYTHON_APIS = re.compile(
    r"\burllib\.request\b|\bfrom urllib import request\b|\bhttp\.client\b|^\s*import requests\b|\burlopen\(|"
    r"\bcreate_connection\(|\.connect\(\(|\btorch\.hub\b|load_state_dict_from_url|download_url|"
    r"\bpretrained\s*=\s*True|weights\s*=\s*[\"']?(IMAGENET|DEFAULT)|ResNet18_Weights")
SHELL_COMMANDS = re.compile(r"\b(curl|wget|git clone|pip install|ssh|scp|rsync)\b")


def test_no_code_reaches_for_the_network():
    found = []
    for folder in ("wsi", "scripts", "bench"):
        for path in sorted((ROOT / folder).rglob("*")):
            if path.suffix not in (".py", ".sh") or "__pycache__" in path.parts:
                continue
            for number, line in enumerate(path.read_text().splitlines(), start=1):
                if path.suffix == ".sh":
                    hit = SHELL_COMMANDS.search(line.split("#", 1)[0].replace("echo", "#"))
                else:
                    hit = PYTHON_APIS.search(line)
                if hit:
                    found.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert found == [], "\n".join(found)
