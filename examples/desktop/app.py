"""A desktop app over edgetf, in Tkinter (the standard library) only.

Pick a bundle folder (its task comes from its edgetf.json or config.json), then a file or some text, and
press Run: the model runs on a worker thread while a progress bar moves, then the result shows as JSON,
with the picture for vision tasks (boxes, segments or depth drawn over the image, or the image itself).

    python examples/desktop/app.py
    python examples/desktop/app.py --bundle models/detr-resnet-50 --input street.jpg --autorun \
        --screenshot shot.png --exit      (what the test does, under Xvfb)

Question answering takes the question on the first line of the text and the context below it.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import queue
import sys
import threading
import tkinter as tk
from pathlib import Path
from tkinter import filedialog, ttk
from typing import Any

import edgetf
from edgetf.__main__ import to_jsonable

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
PICTURE_SIZE = (400, 400)
POLL_MS = 50


def picture_of(task: str, source: Any, output: Any) -> Any:
    """The picture to show for a vision result (a PIL image), or None for other tasks."""
    if not (isinstance(source, str) and Path(source).suffix.lower() in IMAGE_SUFFIXES):
        return None
    from edgetf.vision.draw import DRAWERS
    from edgetf.vision.image import load_image

    image = load_image(source)
    return DRAWERS[task](image, output) if task in DRAWERS else image


def photo_of(picture: Any) -> tk.PhotoImage:
    """A Tk image of a PIL picture, scaled to fit PICTURE_SIZE (Tk reads PNG data itself)."""
    shown = picture.copy()
    shown.thumbnail(PICTURE_SIZE)
    buffer = io.BytesIO()
    shown.save(buffer, format="PNG")
    return tk.PhotoImage(data=base64.b64encode(buffer.getvalue()))


class App(ttk.Frame):
    """The window's content. Drive it from code with choose_bundle / set_text / set_file, then run."""

    def __init__(self, master: tk.Tk):
        super().__init__(master, padding=10)
        self.grid(sticky="nsew")
        master.title("edgetf desktop")
        master.columnconfigure(0, weight=1)
        master.rowconfigure(0, weight=1)
        self.pipes: dict[str, Any] = {}
        self.results: queue.Queue[tuple[str, Any]] = queue.Queue()
        self.busy = False
        self.bundle = tk.StringVar()
        self.file = tk.StringVar()
        self.options = tk.StringVar(value="{}")
        self.status = tk.StringVar(value="Choose a bundle folder.")
        self.photo: tk.PhotoImage | None = None
        self.on_done: list[Any] = []  # callbacks after each run (the --autorun flow uses one)

        ttk.Label(self, text="Bundle").grid(row=0, column=0, sticky="w")
        ttk.Entry(self, textvariable=self.bundle, width=60).grid(row=0, column=1, sticky="ew", padx=4)
        ttk.Button(self, text="Choose folder…", command=self.ask_bundle).grid(row=0, column=2, sticky="ew")
        ttk.Label(self, text="File").grid(row=1, column=0, sticky="w")
        ttk.Entry(self, textvariable=self.file, width=60).grid(row=1, column=1, sticky="ew", padx=4)
        ttk.Button(self, text="Choose file…", command=self.ask_file).grid(row=1, column=2, sticky="ew")
        ttk.Label(self, text="or text").grid(row=2, column=0, sticky="nw")
        self.text = tk.Text(self, height=4, width=60, wrap="word")
        self.text.grid(row=2, column=1, columnspan=2, sticky="ew", padx=4, pady=2)
        ttk.Label(self, text="Options").grid(row=3, column=0, sticky="w")
        ttk.Entry(self, textvariable=self.options, width=60).grid(row=3, column=1, sticky="ew", padx=4)
        self.run_button = ttk.Button(self, text="Run", command=self.run)
        self.run_button.grid(row=3, column=2, sticky="ew")
        self.progress = ttk.Progressbar(self, mode="indeterminate", length=200)
        self.progress.grid(row=4, column=0, columnspan=2, sticky="ew", pady=6)
        ttk.Label(self, textvariable=self.status).grid(row=4, column=2, sticky="w")
        self.result = tk.Text(self, height=18, width=60, wrap="none")
        self.result.grid(row=5, column=0, columnspan=3, sticky="nsew")
        self.picture = ttk.Label(self, anchor="n")
        self.picture.grid(row=0, column=3, rowspan=6, sticky="n", padx=(10, 0))
        self.columnconfigure(1, weight=1)
        self.rowconfigure(5, weight=1)

    # -- inputs -------------------------------------------------------------------------------------
    def ask_bundle(self) -> None:
        folder = filedialog.askdirectory(title="Bundle folder (with config.json)")
        if folder:
            self.choose_bundle(folder)

    def ask_file(self) -> None:
        path = filedialog.askopenfilename(title="Audio or image file")
        if path:
            self.set_file(path)

    def choose_bundle(self, folder: str | Path) -> None:
        self.bundle.set(str(folder))
        self.status.set("Bundle chosen: pick a file or type text, then Run.")

    def set_file(self, path: str | Path) -> None:
        self.file.set(str(path))

    def set_text(self, text: str) -> None:
        self.file.set("")
        self.text.delete("1.0", "end")
        self.text.insert("1.0", text)

    def result_text(self) -> str:
        return self.result.get("1.0", "end-1c")

    # -- running ------------------------------------------------------------------------------------
    def run(self) -> None:
        if self.busy:
            return
        folder, path = self.bundle.get().strip(), self.file.get().strip()
        text = self.text.get("1.0", "end-1c").strip()
        try:
            options = json.loads(self.options.get() or "{}")
            if not isinstance(options, dict):
                raise ValueError('a JSON object such as {"top_k": 3}')
        except ValueError as exc:
            self.show_error(f"Options must be {exc}" if "object" in str(exc) else f"Options are not JSON: {exc}")
            return
        if not folder or not (path or text):
            self.show_error("Choose a bundle folder and a file, or type some text.")
            return
        self.busy = True
        self.run_button.state(["disabled"])
        self.progress.start(10)
        self.status.set("Running…")
        worker = threading.Thread(target=self.work, args=(folder, path or text, options), daemon=True)
        worker.start()
        self.after(POLL_MS, self.poll)

    def work(self, folder: str, item: str, options: dict[str, Any]) -> None:
        """On the worker thread: load (once per folder), run, draw; the outcome goes to the queue."""
        try:
            if folder not in self.pipes:
                self.pipes[folder] = edgetf.pipeline(None, folder)
            pipe = self.pipes[folder]
            args = item.split("\n", 1) if pipe.task == "question-answering" else [item]
            source = pipe.cli_inputs(args)
            output = pipe(source, **options)
            self.results.put(("ok", (pipe.task, to_jsonable(output), picture_of(pipe.task, source, output))))
        except (edgetf.EdgetfError, ValueError, OSError) as exc:
            self.results.put(("error", f"{type(exc).__name__}: {exc}"))

    def poll(self) -> None:
        try:
            kind, payload = self.results.get_nowait()
        except queue.Empty:
            self.after(POLL_MS, self.poll)
            return
        self.progress.stop()
        self.busy = False
        self.run_button.state(["!disabled"])
        if kind == "ok":
            task, output, picture = payload
            self.show_result(task, output, picture)
        else:
            self.show_error(payload)
        for callback in self.on_done:
            callback()

    # -- showing ------------------------------------------------------------------------------------
    def show_result(self, task: str, output: Any, picture: Any) -> None:
        self.result.delete("1.0", "end")
        self.result.insert("1.0", json.dumps(output, ensure_ascii=False, indent=2))
        self.photo = photo_of(picture) if picture is not None else None
        self.picture.configure(image=self.photo or "")
        self.status.set(f"Done: {task}")

    def show_error(self, message: str) -> None:
        self.result.delete("1.0", "end")
        self.result.insert("1.0", message)
        self.status.set("Error")

    def screenshot(self, path: str | Path) -> None:
        """Save the window as it is on screen (X11, Windows, macOS: Pillow's ImageGrab)."""
        from PIL import ImageGrab

        top = self.winfo_toplevel()
        top.update()
        x, y = top.winfo_rootx(), top.winfo_rooty()
        ImageGrab.grab(bbox=(x, y, x + top.winfo_width(), y + top.winfo_height())).save(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="edgetf desktop example")
    parser.add_argument("--bundle", help="bundle folder to start with")
    parser.add_argument("--input", help="a file (audio, image) or text to start with")
    parser.add_argument("--options", default="{}", help="call options as a JSON object")
    parser.add_argument("--autorun", action="store_true", help="press Run once the window is up")
    parser.add_argument("--screenshot", help="with --autorun: save the window as PNG once the result shows")
    parser.add_argument("--exit", action="store_true", help="with --autorun: close after the first result")
    args = parser.parse_args(argv)
    root = tk.Tk()
    app = App(root)
    if args.bundle:
        app.choose_bundle(args.bundle)
    if args.input:
        app.set_file(args.input) if Path(args.input).is_file() else app.set_text(args.input)
    app.options.set(args.options)

    def finished() -> None:
        if args.screenshot:
            app.screenshot(args.screenshot)
        if args.exit:
            root.destroy()

    if args.autorun:
        app.on_done.append(finished)
        root.after(200, app.run)
    root.mainloop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
