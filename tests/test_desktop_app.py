"""examples/desktop/app.py under Xvfb: drive the window, read the result back from its widgets, screenshot it.

Skips only when no X server can be made (no tkinter, or no Xvfb and no usable DISPLAY); CI installs xvfb.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import edgetf
from edgetf.__main__ import to_jsonable
from edgetf.vision.draw import draw_detections
from edgetf.vision.samples import shapes

ROOT = Path(__file__).resolve().parent.parent
APP = ROOT / "examples" / "desktop" / "app.py"
DETECTION = {"threshold": 0.3}


def start_xvfb() -> subprocess.Popen | None:
    if shutil.which("Xvfb") is None:
        return None
    read, write = os.pipe()
    proc = subprocess.Popen(
        ["Xvfb", "-displayfd", str(write), "-screen", "0", "1280x900x24", "-nolisten", "tcp"],
        pass_fds=(write,),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    os.close(write)
    with os.fdopen(read) as pipe:
        number = pipe.readline().strip()
    if not number:
        proc.kill()
        return None
    os.environ["DISPLAY"] = f":{number}"
    return proc


@pytest.fixture(scope="module")
def display():
    if importlib.util.find_spec("tkinter") is None:
        pytest.skip("this Python has no tkinter")
    before = os.environ.get("DISPLAY")
    server = start_xvfb()
    if server is None and not before:
        pytest.skip("no X server can be made: install xvfb (apt-get install xvfb)")
    yield os.environ["DISPLAY"]
    if server is not None:
        server.terminate()
        server.wait(timeout=10)
        if before is None:
            os.environ.pop("DISPLAY", None)
        else:
            os.environ["DISPLAY"] = before


@pytest.fixture(scope="module")
def desktop():
    spec = importlib.util.spec_from_file_location("desktop_app", APP)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def window(display, desktop):
    import tkinter as tk

    root = tk.Tk()
    app = desktop.App(root)
    root.update()
    yield app
    root.destroy()


def wait(app, seconds: float = 300) -> None:
    """Run the Tk loop until the worker's result was shown (a guard against hangs, not a speed check)."""
    deadline = time.monotonic() + seconds
    while app.busy and time.monotonic() < deadline:
        app.update()
        time.sleep(0.01)
    assert not app.busy, "the run did not finish"
    app.update()


def test_text_runs_off_the_ui_thread_with_a_progress_bar_and_shows_the_pipeline_json(window, tiny):
    bundle = tiny.get("distilbert-sst2").bundle
    threads = []
    work = window.work
    window.work = lambda *args: (threads.append(threading.current_thread()), work(*args))
    window.choose_bundle(bundle)
    window.set_text("What a wonderful little film")
    window.options.set('{"top_k": null}')
    window.run_button.invoke()
    assert window.busy and window.run_button.instate(["disabled"])
    assert str(window.progress.cget("mode")) == "indeterminate" and window.status.get() == "Running…"
    wait(window)
    assert threads and threads[0] is not threading.main_thread()
    want = to_jsonable(edgetf.pipeline(None, bundle)("What a wonderful little film", top_k=None))
    assert json.loads(window.result_text()) == want
    assert window.status.get() == "Done: text-classification" and window.photo is None
    assert not window.run_button.instate(["disabled"])


def test_detection_shows_the_boxes_drawn_over_the_image_on_screen(window, tiny, tmp_path):
    bundle = tiny.get("detr-resnet-50").bundle
    image = tmp_path / "shapes.png"
    shapes(320, 240).save(image)
    window.choose_bundle(bundle)
    window.set_file(image)
    window.options.set(json.dumps(DETECTION))
    window.run_button.invoke()
    wait(window)
    output = edgetf.pipeline(None, bundle)(str(image), **DETECTION)
    assert json.loads(window.result_text()) == to_jsonable(output) and output
    shot = tmp_path / "window.png"
    window.screenshot(shot)
    from PIL import Image

    top = window.winfo_toplevel()
    screen = Image.open(shot).convert("RGB")
    assert screen.size == (top.winfo_width(), top.winfo_height())
    # the picture label on screen shows exactly the drawn boxes (PNG in, lossless 24-bit screen out)
    drawn = draw_detections(Image.open(image).convert("RGB"), output).tobytes()
    left = window.picture.winfo_rootx() - top.winfo_rootx()
    upper = window.picture.winfo_rooty() - top.winfo_rooty()
    slack_x, slack_y = window.picture.winfo_width() - 320, window.picture.winfo_height() - 240
    offsets = [(x, y) for x in range(left, left + slack_x + 1) for y in range(upper, upper + slack_y + 1)]
    assert any(screen.crop((x, y, x + 320, y + 240)).tobytes() == drawn for x, y in offsets)


def test_bad_choices_show_an_error_in_the_window_and_leave_it_usable(window, tmp_path):
    window.run_button.invoke()
    assert window.result_text() == "Choose a bundle folder and a file, or type some text." and not window.busy
    window.choose_bundle(tmp_path / "nowhere")
    window.set_text("hello")
    window.options.set("[1, 2]")
    window.run_button.invoke()
    assert window.result_text().startswith("Options must be a JSON object")
    window.options.set("{}")
    window.run_button.invoke()
    wait(window)
    assert window.result_text().startswith("BundleError: bundle folder") and window.status.get() == "Error"


def test_autorun_from_the_command_line_saves_a_screenshot(display, tiny, tmp_path):
    image = tmp_path / "shapes.png"
    shapes(320, 240).save(image)
    shot = tmp_path / "shot.png"
    args = ["--bundle", str(tiny.get("detr-resnet-50").bundle), "--input", str(image)]
    args += ["--options", json.dumps(DETECTION), "--autorun", "--screenshot", str(shot), "--exit"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}  # this checkout's edgetf, not an installed one
    proc = subprocess.run([sys.executable, str(APP), *args], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    from PIL import Image

    picture = Image.open(shot)
    assert picture.width >= 600 and picture.height >= 400
    assert len(picture.convert("RGB").getcolors(1 << 20) or []) > 50  # text, widgets and the drawn image
