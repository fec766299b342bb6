"""A few lines of app code to freeze: run a bundle's own task on inputs and print the output as JSON.

python examples/frozen/app.py BUNDLE INPUT... [--options '{"top_k": 2}']   (texts, or audio/image paths)
pyinstaller --onedir examples/frozen/app.py        (edgetf's hooks keep the folder lean)
"""

import argparse
import json
import sys

import edgetf
from edgetf.__main__ import main as edgetf_main
from edgetf.__main__ import to_jsonable


def main(argv: list[str]) -> int:
    if argv[:1] == ["doctor"]:
        return edgetf_main(argv)
    parser = argparse.ArgumentParser(prog="app", description="run a bundle's own task and print JSON")
    parser.add_argument("bundle")
    parser.add_argument("inputs", nargs="+")
    parser.add_argument("--options", type=json.loads, default={}, help="call options as a JSON object")
    args = parser.parse_args(argv)
    try:
        pipe = edgetf.pipeline(None, args.bundle)
        output = pipe(pipe.cli_inputs(args.inputs), **args.options)
    except edgetf.EdgetfError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps({"task": pipe.task, "dtype": pipe.dtype, "output": to_jsonable(output)}, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
