"""The installer recipes stay consistent with the package, without building anything (a build
takes minutes; `make package` does it): the PyInstaller spec freezes pyproject's console script,
every recipe takes its version from the package metadata, the data files and icons exist, the
spec's hidden imports cover every module the code loads by name (computed here from the code),
the Windows and macOS recipes name the spec's executables, and the CI workflow builds all three
OSes and smoke-tests each. The packagers' own pieces run for real: the spec's entry script and
version, the icon renderer, the .deb and tarball writer (dpkg-deb), and the smoke-test script on
the development install.
"""

from __future__ import annotations

import ast
import importlib
import importlib.metadata
import importlib.util
import os
import re
import shutil
import struct
import subprocess
import sys
import tarfile
import tomllib
from pathlib import Path

import pytest
import yaml  # PyYAML: installed with amqtt, one of the console's own dependencies

ROOT = Path(__file__).resolve().parent.parent
PACKAGING = ROOT / "packaging"
SPEC = PACKAGING / "uplink-console.spec"
ISS = PACKAGING / "windows" / "uplink-console.iss"
BUILD_WINDOWS = PACKAGING / "build-windows.ps1"
BUILD_MACOS = PACKAGING / "build-macos.sh"
BUILD_LINUX = PACKAGING / "build-linux.sh"
SMOKE_TEST = PACKAGING / "smoke-test.sh"
WORKFLOW = ROOT / ".github" / "workflows" / "packages.yml"
RECIPES = [
    SPEC,
    ISS,
    BUILD_WINDOWS,
    BUILD_MACOS,
    BUILD_LINUX,
    PACKAGING / "build.sh",
    SMOKE_TEST,
    PACKAGING / "linux_packages.py",
    WORKFLOW,
]
# The console script pip installed next to this Python (the development install).
DEV_CONSOLE = Path(sys.executable).parent / "uplink-console"
SBIN_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/usr/local/sbin"])


def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def spec_tree() -> ast.Module:
    return ast.parse(SPEC.read_text(encoding="utf-8"), filename=str(SPEC))


def spec_constants() -> dict:
    """The spec's top-level NAME = <literal> assignments."""
    found = {}
    for node in spec_tree().body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            try:
                found[node.targets[0].id] = ast.literal_eval(node.value)
            except ValueError:
                continue
    return found


def _is_literal(node: ast.expr) -> bool:
    try:
        ast.literal_eval(node)
    except ValueError:
        return False
    return True


def spec_functions(workpath: Path) -> dict:
    """The spec's helper functions, run outside PyInstaller with the globals a spec gets."""
    tree = spec_tree()
    keep = [n for n in tree.body if isinstance(n, ast.Import | ast.ImportFrom | ast.FunctionDef)]
    keep = [n for n in keep if not (isinstance(n, ast.ImportFrom) and n.module.startswith("PyInstaller"))]
    keep += [n for n in tree.body if isinstance(n, ast.Assign) and _is_literal(n.value)]
    namespace = {"SPECPATH": str(PACKAGING), "workpath": str(workpath), "ROOT": str(ROOT)}
    exec(compile(ast.Module(body=keep, type_ignores=[]), str(SPEC), "exec"), namespace)
    return namespace


def covered(module: str, constants: dict) -> bool:
    """Whether the spec's hidden imports take `module` (listed, or inside a package taken whole)."""
    if any(module == x or module.startswith(x + ".") for x in constants["EXCLUDES"]):
        return False
    whole = constants["SUBMODULES_OF"] + constants["OPTIONAL_SUBMODULES_OF"]
    return module in constants["NAMED_MODULES"] or any(module == p or module.startswith(p + ".") for p in whole)


def module_of(dotted: str) -> str | None:
    """The module a dotted name refers to: the name itself, or its parent when it names a class there."""
    try:
        if importlib.util.find_spec(dotted) is not None:
            return dotted
    except (ImportError, ValueError):
        pass
    parent, _, attribute = dotted.rpartition(".")
    try:
        return parent if hasattr(importlib.import_module(parent), attribute) else None
    except ImportError:
        return None


DOTTED = re.compile(r"^[a-z_][a-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+$")
THIRD_PARTY_ROOTS = {"app", "ui", "amqtt", "keyring", "keyrings", "qasync", "aiomqtt", "paho"}


def modules_loaded_by_name() -> dict[str, str]:
    """Every module the console's code names in a string for something else to import, with where.

    - each string given to importlib.import_module, or held in a module-level registry of a file
      that calls it (app/platforms' _MODULES);
    - each "package.module[.Class]" string constant naming one of the console's or its loaders'
      modules (amqtt plugins in the embedded broker's config, keyring backend names); logger
      names (getLogger("app.mqtt.session")) are names, not imports.
    """
    found: dict[str, str] = {}
    for path in sorted([*(ROOT / "app").rglob("*.py"), *(ROOT / "ui").rglob("*.py")]):
        source = path.read_text(encoding="utf-8")
        tree = ast.parse(source, filename=str(path))
        where = str(path.relative_to(ROOT))
        logger_names = {
            id(arg)
            for node in ast.walk(tree)
            if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "getLogger"
            for arg in node.args
        }
        for node in ast.walk(tree):
            if id(node) in logger_names:
                continue
            named = isinstance(node, ast.Constant) and isinstance(node.value, str) and DOTTED.match(node.value)
            if named and node.value.split(".")[0] in THIRD_PARTY_ROOTS and (module := module_of(node.value)):
                found.setdefault(module, where)
            if isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) in (
                "import_module",
                "__import__",
            ):
                arg = node.args[0] if node.args else None
                if isinstance(arg, ast.Constant):
                    found.setdefault(arg.value, where)
    return found


# --- entry point and version ---------------------------------------------------------------


def test_the_spec_freezes_the_console_script_of_pyproject(tmp_path):
    constants = spec_constants()
    scripts = pyproject()["project"]["scripts"]
    assert constants["SCRIPT_NAME"] in scripts, "the spec freezes a console script pyproject does not declare"
    assert constants["EXE_NAME"] == constants["SCRIPT_NAME"], "the executable is not named like the command"
    module, _, function = scripts[constants["SCRIPT_NAME"]].partition(":")
    assert callable(getattr(importlib.import_module(module), function))

    # The spec's own entry script, as PyInstaller would get it, runs the console.
    entry = Path(spec_functions(tmp_path)["_entry_script"]())
    assert entry.parent == tmp_path
    assert f"from {module} import {function}" in entry.read_text()
    result = subprocess.run(
        [sys.executable, str(entry), "--version"], capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"uplink-console {importlib.metadata.version('uplink-console')}"


def test_every_recipe_takes_the_version_from_the_package_metadata(tmp_path):
    constants = spec_constants()
    project = pyproject()["project"]
    assert constants["DIST_NAME"] == project["name"]
    assert "version" in project.get("dynamic", []), "pyproject hard-codes a version the metadata would duplicate"
    metadata_version = importlib.metadata.version(project["name"])
    assert spec_functions(tmp_path)["_package_version"]() == metadata_version

    printed = subprocess.run(
        [sys.executable, str(PACKAGING / "version.py")], capture_output=True, text=True, timeout=30, check=True
    )
    assert printed.stdout.strip() == metadata_version

    # No second version anywhere in the recipes: no x.y.z literal at all.
    for recipe in RECIPES:
        text = recipe.read_text(encoding="utf-8")
        assert not re.search(r"(?<![\w.])\d+\.\d+\.\d+(?![\w.])", text), f"{recipe.name} hard-codes a version"

    spec = SPEC.read_text()
    assert "importlib.metadata.version(DIST_NAME)" in spec
    assert re.search(r"BUNDLE\([^)]*version=VERSION", spec, re.S), "the macOS bundle's version is not the metadata's"
    assert '"CFBundleShortVersionString": VERSION' in spec
    iss = ISS.read_text()
    assert re.search(r"#ifndef AppVersion\s+#error", iss), "the Inno script must refuse to build without AppVersion"
    assert "#define AppVersion" not in iss and "AppVersion={#AppVersion}" in iss
    ps1 = BUILD_WINDOWS.read_text()
    assert "packaging\\version.py" in ps1 and '"/DAppVersion=$version"' in ps1
    for script in (BUILD_MACOS, BUILD_LINUX):
        assert 'version=$("$PYTHON" packaging/version.py)' in script.read_text(), script.name
    assert "importlib.metadata.version(DIST_NAME)" in (PACKAGING / "linux_packages.py").read_text()


# --- what the bundle carries ----------------------------------------------------------------


def test_the_data_files_the_spec_lists_exist_and_cover_what_the_code_opens():
    constants = spec_constants()
    for name in [*constants["DATA_FILES"], constants["ICON_WINDOWS"], constants["ICON_MACOS"]]:
        assert (ROOT / name).is_file(), f"the spec lists {name}, which does not exist"
    assert (ROOT / constants["ENTITLEMENTS_MACOS"]).is_file()
    opened = set()
    for path in [*(ROOT / "app").rglob("*.py"), *(ROOT / "ui").rglob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "path"
                and isinstance(node.func.value, ast.Name)
                and node.func.value.id == "resources"
                and node.args
                and isinstance(node.args[0], ast.Constant)
            ):
                opened.add(f"resources/{node.args[0].value}")
    assert opened, "found no resources.path(...) call: the scan is broken"
    assert opened <= set(constants["DATA_FILES"]), f"not bundled: {sorted(opened - set(constants['DATA_FILES']))}"


def test_hidden_imports_cover_every_module_loaded_by_name():
    constants = spec_constants()
    loaded = modules_loaded_by_name()
    # The scan must see the registry and the embedded broker's plugins, or it is not scanning.
    from app import platforms

    assert set(platforms._MODULES.values()) <= set(loaded), "the scan missed the platform registry"
    assert any(m.startswith("amqtt.plugins") for m in loaded), "the scan missed the embedded broker's plugins"
    missing = {m: where for m, where in loaded.items() if not covered(m, constants)}
    assert not missing, f"loaded by name but not in the spec's hidden imports: {missing}"
    for module in constants["NAMED_MODULES"]:
        assert importlib.util.find_spec(module), f"the spec names {module}, which does not exist"
    # Each simulator module (one per platform, chosen by name) is taken.
    for path in (ROOT / "app" / "simulate").glob("*.py"):
        if path.stem != "__init__":
            assert covered(f"app.simulate.{path.stem}", constants)


def test_plugins_loaded_through_entry_points_are_bundled_with_their_metadata():
    """keyring finds its backends, and amqtt its plugins, by entry point: both need their metadata."""
    constants = spec_constants()
    for dist, group in (("keyring", "keyring.backends"), ("amqtt", "amqtt.broker.plugins")):
        assert dist in constants["METADATA_OF"], f"{dist}'s entry points need copy_metadata({dist!r})"
        points = [ep for ep in importlib.metadata.distribution(dist).entry_points if ep.group == group]
        assert points, f"{dist} declares no {group} entry points any more"
        for ep in points:
            assert covered(ep.module, constants), f"{ep.name} = {ep.value} is not in the hidden imports"
    for package in ("qasync", "aiomqtt", "paho.mqtt", "keyring.backends"):
        assert covered(package, constants), package
    assert "keyrings.alt" in constants["OPTIONAL_SUBMODULES_OF"] + constants["SUBMODULES_OF"]


def test_the_icons_are_the_svg_rendered_and_hold_every_size():
    result = subprocess.run(
        [sys.executable, str(PACKAGING / "make_icons.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "QT_QPA_PLATFORM": "offscreen"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    sys.path.insert(0, str(PACKAGING))
    try:
        import make_icons
    finally:
        sys.path.remove(str(PACKAGING))
    ico = make_icons.ICO.read_bytes()
    reserved, kind, count = struct.unpack_from("<HHH", ico)
    assert (reserved, kind, count) == (0, 1, len(make_icons.ICO_SIZES))
    sizes = [struct.unpack_from("<B", ico, 6 + 16 * i)[0] or 256 for i in range(count)]
    assert sizes == sorted(make_icons.ICO_SIZES)
    icns = make_icons.ICNS.read_bytes()
    assert icns[:4] == b"icns" and struct.unpack_from(">I", icns, 4)[0] == len(icns)
    offset, kinds = 8, []
    while offset < len(icns):
        kinds.append(icns[offset : offset + 4])
        offset += struct.unpack_from(">I", icns, offset + 4)[0]
    assert offset == len(icns) and b"ic10" in kinds and b"ic07" in kinds


# --- the other OSes' recipes ----------------------------------------------------------------


def test_the_windows_and_macos_recipes_name_the_spec_executables():
    constants = spec_constants()
    exe, cli = constants["EXE_NAME"], constants["CLI_EXE_NAME"]
    iss = ISS.read_text()
    assert f'#define ExeName "{exe}.exe"' in iss
    assert f'#define CliExeName "{cli}.exe"' in iss
    assert f'#define SourceDir "..\\..\\dist\\{exe}"' in iss, "the installer does not package the spec's folder"
    assert f"SetupIconFile=..\\..\\{constants['ICON_WINDOWS'].replace('/', chr(92))}" in iss
    base = re.search(r"^OutputBaseFilename=(.+)$", iss, re.M).group(1).replace("{#AppVersion}", "$version")
    ps1 = BUILD_WINDOWS.read_text()
    assert f'"dist\\{base}.exe"' in ps1, "build-windows.ps1 looks for another installer than Inno makes"
    assert f"{exe}.exe" in ps1 and f"{cli}.exe" in ps1
    assert f"dist/{exe}/{cli}.exe" in ps1, "Windows smoke-tests something else than the console executable"

    spec = SPEC.read_text()
    assert re.search(r"name=CLI_EXE_NAME,\s*console=True", spec), "the Windows console twin must have a console"
    assert re.search(r"name=EXE_NAME,\s*console=not windows", spec), "the window must have no console on Windows"
    macos = BUILD_MACOS.read_text()
    assert f'app="dist/{constants["BUNDLE_NAME"]}"' in macos
    assert f"/Contents/MacOS/{exe}" in macos
    assert "hdiutil create" in macos and "smoke-test.sh" in macos
    for hook in ("MACOS_CODESIGN_IDENTITY", "MACOS_NOTARY_PROFILE", "MACOS_NOTARY_APPLE_ID"):
        assert hook in macos, hook
    for hook in ("WINDOWS_SIGN_CERT_FILE", "WINDOWS_SIGN_CERT_PASSWORD"):
        assert hook in ps1, hook


def test_the_workflow_builds_every_os_and_runs_the_smoke_test_there():
    workflow = yaml.safe_load(WORKFLOW.read_text(encoding="utf-8"))
    triggers = workflow.get("on", workflow.get(True))  # YAML 1.1 reads a bare `on` as True
    assert "push" in triggers and "pull_request" in triggers
    constants = spec_constants()
    expected = {
        "linux": ("ubuntu", "make package"),
        "macos": ("macos", "packaging/build-macos.sh"),
        "windows": ("windows", "./packaging/build-windows.ps1"),
    }
    for name, (runner, build) in expected.items():
        job = workflow["jobs"][name]
        assert job["runs-on"].startswith(runner)
        steps = job["steps"]
        pythons = [s["with"]["python-version"] for s in steps if s.get("uses", "").startswith("actions/setup-python")]
        assert pythons == ["3.12"], f"{name}: setup-python 3.12 expected, got {pythons}"
        runs = "\n".join(s.get("run", "") for s in steps)
        assert build in runs, f"{name} does not run {build}"
        assert "packaging/smoke-test.sh" in runs, f"{name} does not run the smoke test"
        for path in re.findall(r"packaging/[\w./-]+", runs):
            assert (ROOT / path).exists(), f"{name} runs {path}, which does not exist"
        smoke_steps = [s for s in steps if "smoke-test.sh" in s.get("run", "")]
        for step in smoke_steps:
            target = re.search(r"smoke-test\.sh\s+(\"[^\"]+\"|\S+)", step["run"]).group(1).strip('"')
            assert Path(target).name.startswith(constants["EXE_NAME"]), f"{name} smoke-tests {target}"
    # The build scripts themselves smoke-test what they make, offscreen.
    for script in (BUILD_LINUX, BUILD_MACOS, BUILD_WINDOWS):
        assert "smoke-test.sh" in script.read_text(), script.name
    smoke = SMOKE_TEST.read_text()
    assert "QT_QPA_PLATFORM=offscreen" in smoke and "--demo --smoke-test" in smoke and "--version" in smoke
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^package:.*\n(\t.*\n)*\t.*packaging/build-linux\.sh", makefile, re.M)
    assert re.search(r"^\.PHONY:.*\bpackage\b", makefile, re.M)


# --- the Linux packager and the smoke test, for real ----------------------------------------


def linux_packages():
    sys.path.insert(0, str(PACKAGING))
    try:
        import linux_packages as module
    finally:
        sys.path.remove(str(PACKAGING))
    return module


def test_the_deb_depends_on_every_library_system_deps_installs_for_the_window():
    lp = linux_packages()
    text = (ROOT / "scripts" / "system-deps").read_text()
    listed = re.findall(r"\blib[\w.+-]+", re.search(r'^want="([^"]+)"', text, re.M).group(1))
    listed += re.findall(r"\blib[\w.+-]+", re.search(r'^xcb="([^"]+)"', text, re.M).group(1))
    assert "libxcb-cursor0" in listed
    depends = [alt.strip() for field in lp.depends_field(lp.qt_runtime_packages()).split(",") for alt in [field]]
    for package in listed:
        assert any(package in [a.strip() for a in d.split("|")] for d in depends), f"Depends lacks {package}"
    control = lp.control_text("9", "amd64", 1, lp.depends_field(lp.qt_runtime_packages()))
    fields = dict(line.split(": ", 1) for line in control.splitlines() if line and not line.startswith(" "))
    for field in ("Package", "Version", "Architecture", "Maintainer", "Depends", "Description", "Installed-Size"):
        assert fields.get(field), field


@pytest.mark.skipif(not shutil.which("dpkg-deb"), reason="dpkg-deb is not installed")
def test_the_deb_and_tarball_install_a_launcher_that_runs_the_program(tmp_path):
    """The packager on a small program folder: a real dpkg-deb build, unpacked, its launcher run."""
    lp = linux_packages()
    folder = tmp_path / "uplink-console"
    (folder / "_internal").mkdir(parents=True)
    (folder / "_internal" / "data.txt").write_text("kept\n")
    program = folder / lp.EXE_NAME
    # The development console stands in for the frozen one (same command line).
    program.write_text(f'#!/bin/sh\nexec "{DEV_CONSOLE}" "$@"\n')
    program.chmod(0o700)
    out = tmp_path / "out"
    out.mkdir()
    version = importlib.metadata.version("uplink-console")
    deb = lp.build_deb(folder, version, out)
    tarball = lp.build_tarball(folder, version, out)
    assert deb.name == f"uplink-console_{version}_{lp.deb_architecture()}.deb"

    info = subprocess.run(["dpkg-deb", "--field", str(deb)], capture_output=True, text=True, check=True).stdout
    assert f"Version: {version}" in info and "libxcb-cursor0" in info
    root = tmp_path / "root"
    subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
    installed = root / lp.INSTALL_DIR.lstrip("/") / lp.EXE_NAME
    assert installed.stat().st_mode & 0o777 == 0o755
    assert (root / lp.INSTALL_DIR.lstrip("/") / "_internal" / "data.txt").stat().st_mode & 0o777 == 0o644
    desktop = (root / "usr/share/applications/uplink-console.desktop").read_text()
    assert "Exec=uplink-console" in desktop and "Icon=uplink-console" in desktop
    assert (root / "usr/share/icons/hicolor/256x256/apps/uplink-console.png").is_file()
    launcher = (root / lp.LAUNCHER.lstrip("/")).read_text().replace(lp.INSTALL_DIR, str(installed.parent))
    (tmp_path / "launcher").write_text(launcher)
    result = subprocess.run(["sh", str(tmp_path / "launcher"), "--version"], capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == f"uplink-console {version}", result.stderr

    with tarfile.open(tarball) as tar:
        member = tar.getmember(f"{lp.EXE_NAME}/{lp.EXE_NAME}")
        assert member.mode == 0o755 and member.uid == 0
        assert tar.getmember(f"{lp.EXE_NAME}/_internal/data.txt").mode == 0o644


def run_smoke_test(exe: str, seconds: str, **env) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["sh", str(SMOKE_TEST), exe, seconds],
        capture_output=True,
        text=True,
        timeout=240,
        env={**os.environ, **env},
        cwd=ROOT,
    )


def test_the_smoke_test_passes_on_the_development_console_and_fails_loudly_otherwise(tmp_path):
    exe = str(DEV_CONSOLE)
    version = importlib.metadata.version("uplink-console")
    # mosquitto where installed (as for the rest of the suite): the script is under test here, and
    # the Python broker would only add to the load; make package runs it on the bundled amqtt.
    broker = {"UPLINK_CONSOLE_DEMO_BROKER": "mosquitto"} if shutil.which("mosquitto", path=SBIN_PATH) else {}
    passed = run_smoke_test(exe, "15", EXPECTED_VERSION=version, **broker)
    assert passed.returncode == 0, passed.stdout + passed.stderr
    assert f"uplink-console {version}" in passed.stdout
    assert "smoke test passed" in passed.stdout
    line = [x for x in passed.stdout.splitlines() if x.startswith("{")][-1]
    assert '"rows"' in line

    wrong_version = run_smoke_test(exe, "1", EXPECTED_VERSION=version + "9")
    assert wrong_version.returncode != 0 and "SMOKE TEST FAILED" in wrong_version.stderr
    missing = run_smoke_test(str(tmp_path / "nothing-here"), "1")
    assert missing.returncode != 0 and "is not an executable file" in missing.stderr
