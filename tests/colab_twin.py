"""A twin of Colab's runtime: a virtual environment at Colab's own package versions.

Built from Colab's published ``pip freeze`` (``tests/colab/``): the widget stack (ipywidgets 7.7.1,
widgetsnbextension, jupyterlab_widgets), IPython, ipykernel and jupyter_client, matplotlib, numpy,
pip and setuptools, and everything they pull in, each at the freeze's exact version.  A stand-in
``google.colab`` is installed and imported at kernel start, as Colab does.

torch is the one exception.  Colab's is 2.11.0+cpu for Python 3.13; no CPU build of torch for 3.13
can be had here without a multi-GB download, so the twin uses the interpreter and the torch of this
project's own environment (Python 3.11 and torch 2.13.0 on the course's machines), linked, not
installed again.  pip sees that torch with the metadata Colab's torch declares (version 2.11.0+cpu
and its requirements), so pip decides in the twin what it would decide in Colab.

The twin is built once and cached in ``.colab-twin/<key>/`` (git-ignores itself), keyed by the
freeze file's hash, this recipe and the interpreter; every run of a notebook gets a fresh, empty
environment layered on it (:func:`layer`), so each start-up cell really installs attnkit and nothing
it does stays behind.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COLAB = Path(__file__).resolve().parent / "colab"
DEFAULT_RUNTIME = COLAB / "pip-freeze-2026-08-19.txt"  # Colab's default runtime (Python 3.13.15)
CACHE = ROOT / ".colab-twin"
RECIPE = 3  # bump when the recipe below changes

# Installed at Colab's versions (with everything they need, also pinned by the freeze).
STACK = [
    "ipywidgets", "widgetsnbextension", "jupyterlab_widgets",  # the widget stack Colab renders
    "ipython", "ipykernel", "jupyter_client", "jupyter_core", "traitlets", "tornado", "pyzmq",
    "matplotlib", "matplotlib-inline", "numpy", "pillow", "packaging",
    "pip", "setuptools", "wheel",
    # what torch needs at run time
    "filelock", "typing_extensions", "sympy", "networkx", "jinja2", "fsspec",
]
# What Colab's torch 2.11.0+cpu declares (torch 2.11.0's requirements, without the CUDA packages
# that only the GPU build has).
COLAB_TORCH_REQUIRES = [
    "filelock", "typing-extensions>=4.10.0", "setuptools<82", "sympy>=1.13.3", "networkx>=2.5.1",
    "jinja2", "fsspec>=0.8.5",
]
# Built in the twin to compile attnkit from source, as Colab's pip fetches it for an isolated build.
BUILD_BACKEND = "setuptools>=77"
# Required by the stack at every Python, yet not in Colab (IPython imports it only if it is there).
# (overrides, which jupyter_server needs below Python 3.12 only, stays: Colab's 3.13 has no need.)
LEFT_OUT_BY_COLAB = {"jedi"}
# Colab's own packages that the twin provides otherwise (linked, or the stand-in).
NOT_FROM_THE_FREEZE = {"torch", "google-colab"}


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def freeze_pins(freeze: Path) -> dict[str, str]:
    """name -> version for every ``name==version`` line, plus the versions of direct-URL lines."""
    pins = {}
    for line in freeze.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if "==" in line:
            name, version = line.split("==", 1)
            pins[canonical(name)] = version.strip()
        elif " @ " in line:
            name, url = line.split(" @ ", 1)
            found = re.search(r"-(\d[^-/]*?)(?:%2B|\+)([a-z0-9]+)-", url)  # torch-2.11.0%2Bcpu-cp313...
            if found:
                pins[canonical(name)] = f"{found.group(1)}+{found.group(2)}"
            elif found := re.search(r"-(\d[\w.]*)\.tar\.gz$", url):  # google_colab-1.0.0.tar.gz
                pins[canonical(name)] = found.group(1)
    return pins


def constraints(freeze: Path) -> str:
    """The freeze as a pip constraints file (pip allows no direct URLs there: those lines are left out)."""
    return "".join(line + "\n" for line in freeze.read_text().splitlines() if re.match(r"^[A-Za-z0-9_.-]+==", line))


def _site_packages(python: Path) -> Path:
    out = subprocess.run([str(python), "-I", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                         capture_output=True, text=True, check=True).stdout.strip()
    return Path(out)


def _versions(python: Path) -> dict[str, str]:
    """name -> version of every distribution that ``python`` sees (the first one on sys.path wins)."""
    program = (
        "import importlib.metadata as m, json, re\n"
        "seen = {}\n"
        "for d in m.distributions():\n"
        "    name = re.sub(r'[-_.]+', '-', d.metadata['Name']).lower()\n"
        "    seen.setdefault(name, d.version)\n"
        "print(json.dumps({n: m.version(n) for n in seen}))\n"
    )
    out = subprocess.run([str(python), "-I", "-c", program], capture_output=True, text=True, check=True).stdout
    return {canonical(k): v for k, v in json.loads(out).items()}


def _pip(python: Path, *args: str, log: Path) -> None:
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PYTHONNOUSERSITE": "1"}
    with log.open("a") as out:
        out.write(f"$ pip {' '.join(args)}\n")
        out.flush()
        done = subprocess.run([str(python), "-m", "pip", *args], stdout=out, stderr=subprocess.STDOUT, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"building the Colab twin failed at `pip {' '.join(args)}`; see {log}")


def _torch_source() -> Path:
    """The site-packages folder holding this project's torch."""
    import torch  # the project's own

    return Path(torch.__file__).resolve().parent.parent


def _write_dist_info(site: Path, name: str, version: str, requires: list[str], files: list[str]) -> None:
    dist = site / f"{name.replace('-', '_')}-{version}.dist-info"
    dist.mkdir(parents=True, exist_ok=True)
    meta = ["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}"]
    meta += [f"Requires-Dist: {r}" for r in requires]
    (dist / "METADATA").write_text("\n".join(meta) + "\n")
    (dist / "INSTALLER").write_text("colab-twin\n")
    (dist / "RECORD").write_text("".join(f"{f},,\n" for f in files))


@dataclass(frozen=True)
class Twin:
    root: Path
    python: Path  # the twin's interpreter
    site: Path  # its site-packages
    wheelhouse: Path  # the build backend, for pip's isolated build of attnkit
    pins: dict[str, str]  # Colab's version of every package in the twin
    freeze: Path

    @property
    def pinned(self) -> dict[str, str]:
        """Every distribution in the twin and its version (Colab's, where the freeze has it)."""
        return json.loads((self.root / "pinned.json").read_text())

    @property
    def not_in_freeze(self) -> dict[str, str]:
        return json.loads((self.root / "not-in-freeze.json").read_text())


def key(freeze: Path, python: str) -> str:
    version = subprocess.run([python, "-c", "import sys; print(sys.version)"], capture_output=True, text=True,
                             check=True).stdout
    torch_version = _torch_version()
    data = json.dumps([RECIPE, STACK, COLAB_TORCH_REQUIRES, BUILD_BACKEND, version, torch_version]).encode()
    return hashlib.sha256(freeze.read_bytes() + data).hexdigest()[:16]


def _torch_version() -> str:
    import torch

    return torch.__version__


def build(freeze: Path = DEFAULT_RUNTIME, python: str | None = None) -> Twin:
    """The twin for ``freeze``: from the cache, or built now (a few minutes, once)."""
    python = python or getattr(sys, "_base_executable", sys.executable)
    root = CACHE / key(freeze, python)
    venv = root / "venv"
    twin_python = venv / "bin" / "python"
    pins = freeze_pins(freeze)
    if (root / "complete").exists():
        return Twin(root, twin_python, _site_packages(twin_python), root / "wheelhouse", pins, freeze)
    CACHE.mkdir(exist_ok=True)
    (CACHE / ".gitignore").write_text("# the Colab twin's cache (tests/colab_twin.py)\n*\n")
    for old in CACHE.iterdir():  # twins of an older freeze, recipe or interpreter
        if old.is_dir() and (old / "venv").exists():
            shutil.rmtree(old, ignore_errors=True)
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    log = root / "build.log"
    subprocess.run([python, "-m", "venv", str(venv)], check=True)
    (root / "constraints.txt").write_text(constraints(freeze))
    c = ["-c", str(root / "constraints.txt")]
    _pip(twin_python, "install", "-q", *c, "pip", log=log)  # Colab's pip first: it installs the rest
    _pip(twin_python, "install", "-q", *c, *STACK, log=log)
    # Colab leaves out some packages that the stack requires (jedi, which IPython 7.34 asks for but
    # does without): so does the twin, so that a pip that wants them is seen wanting them.
    missing_in_colab = [n for n in _versions(twin_python) if n not in freeze_pins(freeze) and n in LEFT_OUT_BY_COLAB]
    if missing_in_colab:
        _pip(twin_python, "uninstall", "-q", "-y", *missing_in_colab, log=log)
    site = _site_packages(twin_python)

    # torch: the project's, linked; described to pip as Colab's.
    source = _torch_source()
    links = root / "torch-link"
    links.mkdir()
    # torch's code, and where a CUDA build keeps the libraries it loads (found next to torch/)
    linked = [p for p in ("torch", "torchgen", "functorch", "nvidia", "triton", "cuda") if (source / p).exists()]
    for name in linked:
        (links / name).symlink_to(source / name)
    _write_dist_info(links, "torch", pins["torch"], COLAB_TORCH_REQUIRES, [f"{n}/__init__.py" for n in linked])
    (site / "colab-twin-torch.pth").write_text(f"{links}\n")

    # google.colab: the stand-in, in a namespace package `google` like Colab's.
    shutil.copytree(COLAB / "stand_in" / "google" / "colab", site / "google" / "colab")
    _write_dist_info(site, "google-colab", pins["google-colab"], [],
                     ["google/colab/__init__.py", "google/colab/output.py"])

    wheelhouse = root / "wheelhouse"
    _pip(twin_python, "download", "-q", "--no-deps", "-d", str(wheelhouse), BUILD_BACKEND, log=log)

    versions = _versions(twin_python)
    wrong = {n: (v, pins[n]) for n, v in versions.items() if n in pins and n not in NOT_FROM_THE_FREEZE
             and pins[n] != v}
    if wrong:
        raise RuntimeError(f"the twin differs from Colab's freeze (installed, Colab's): {wrong}; see {log}")
    # Needed on this Python but not in the freeze (e.g. jedi, which IPython 7.34 requires, and
    # overrides, which jupyter_server needs below Python 3.12): kept, reported, and pinned like the rest.
    (root / "not-in-freeze.json").write_text(json.dumps({n: v for n, v in versions.items() if n not in pins}))
    (root / "pinned.json").write_text(json.dumps(versions, indent=1, sort_keys=True))
    (root / "complete").write_text("")
    return Twin(root, twin_python, site, wheelhouse, pins, freeze)


def layer(twin: Twin, where: Path) -> Path:
    """A fresh, empty environment that sees everything in the twin: where one notebook's start-up
    cell installs attnkit (pip writes into it; the twin itself stays as built)."""
    venv = where / "venv"
    subprocess.run([str(twin.python), "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = _site_packages(python)
    # Plain path lines, like Colab's system site-packages: pip's isolated build environment then hides
    # them all (an `import site; site.addsitedir(...)` line would let the twin's setuptools leak into
    # the build).  The twin's own .pth path lines (the linked torch) are repeated here.
    paths = [str(twin.site)]
    for pth in sorted(twin.site.glob("*.pth")):
        paths += [line for line in pth.read_text().splitlines() if line.strip() and not line.startswith(("#", "import"))]
    (site / "colab-twin.pth").write_text("".join(f"{p}\n" for p in paths))
    return python


def versions(python: Path) -> dict[str, str]:
    return _versions(python)


def kernel_spec(twin: Twin, python: Path, where: Path, env: dict[str, str]) -> Path:
    """A kernel spec for ``python`` that imports google.colab at kernel start, as Colab does."""
    spec = where / "kernels" / "colab-twin"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [str(python), "-m", "ipykernel_launcher", "-f", "{connection_file}", "--ext", "google.colab"],
        "display_name": "Colab twin", "language": "python", "env": env,
    }))
    return spec.parent


__all__ = ["CACHE", "DEFAULT_RUNTIME", "STACK", "Twin", "build", "constraints", "freeze_pins", "kernel_spec",
           "layer", "versions"]
