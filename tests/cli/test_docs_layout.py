"""The README's layout and docs/architecture.md name the folders that exist (issue 31): every
concept folder of parallel/ and trainers/ (src/ and the public headers, which mirror each other) has
its line in the README, and every folder either document names is there."""
import os
import re
import sys

ROOT = os.environ["DPTRAIN_SOURCE_DIR"]
failures = []


def folders(path):
    return {d for d in os.listdir(os.path.join(ROOT, path)) if os.path.isdir(os.path.join(ROOT, path, d))}


readme = open(os.path.join(ROOT, "README.md")).read()
layout = readme[readme.index("## Layout"):]
layout = layout[layout.index("```") + 3:]
layout = layout[:layout.index("```")]

# Lines "  name/ ..." under "parallel/" or "trainers/" (several names may share a line: "mpi/ nccl/").
named = {}
layer = None
for line in layout.splitlines():
    top = re.match(r"^([a-z_.A-Z]+)/", line)
    if top:
        layer = top.group(1)
        continue
    if line.startswith("  ") and layer:
        for name in re.findall(r"([a-z_0-9]+)/", line.strip().split("  ")[0]):
            named.setdefault(layer, set()).add(name)

for layer in ("parallel", "trainers"):
    src = folders(f"{layer}/src")
    public = folders(f"{layer}/include/dptrain/{layer}")
    if not public <= src:
        failures.append(f"{layer}: public header folders without a src/ folder: {sorted(public - src)}")
    listed = named.get(layer, set())
    expected = src | ({"cli"} if layer == "trainers" else set())
    if listed != expected:
        failures.append(f"README layout of {layer}/: lists {sorted(listed)}, the tree has {sorted(expected)}")

architecture = open(os.path.join(ROOT, "docs", "architecture.md")).read()
for path in re.findall(r"`((?:core|parallel|trainers)/[a-z_0-9./]+)`", architecture):
    path = path.replace("/...", "/include/dptrain/" + path.split("/")[0])
    for candidate in [path] + [path.replace("/include/dptrain/" + path.split("/")[0], "/src")]:
        if os.path.exists(os.path.join(ROOT, candidate.split(",")[0].rstrip("/"))):
            break
    else:
        failures.append(f"docs/architecture.md names {path}, which does not exist")

for failure in failures:
    print("FAIL:", failure)
if failures:
    sys.exit(1)
print(f"ok: the README's layout names the {sum(len(v) for v in named.values())} concept folders of parallel/ and "
      "trainers/, and docs/architecture.md names only folders that exist")
