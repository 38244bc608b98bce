"""Turn a Python source file into a C header holding it as a string constant.

    python tools/embed_py.py SOURCE.py OUTPUT.h SYMBOL

The shim compiles and runs this source inside the embedded interpreter at start-up, so the glue
module needs no installation on sys.path.
"""
import sys


def main(argv):
    if len(argv) != 4:
        print(__doc__, file=sys.stderr)
        return 2
    src, out, symbol = argv[1:]
    with open(src, "rb") as f:
        data = f.read()
    lines = [f"/* generated from {src} by tools/embed_py.py -- do not edit */",
             f"static const char {symbol}[] = {{"]
    for i in range(0, len(data), 16):
        lines.append("  " + ", ".join(str(b) for b in data[i:i + 16]) + ",")
    lines.append("  0};")
    with open(out, "w", encoding="ascii") as f:
        f.write("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
