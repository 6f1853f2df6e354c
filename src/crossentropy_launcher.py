"""Entry point of the ``crossentropy`` console script.

It lives outside the ``crossentropy`` package on purpose: importing the
package (NumPy and the loss modules) takes a noticeable fraction of a
second, and a Ctrl-C during that import would otherwise end in a traceback.
Here the import itself is guarded, so Ctrl-C at any moment ends quietly with
exit status 130.
"""

import sys


def main() -> int:
    try:
        from crossentropy.cli import main as run

        return run()
    except KeyboardInterrupt:
        try:
            sys.stderr.write("crossentropy: error: interrupted; no output file was written\n")
        except OSError:
            pass
        return 130


if __name__ == "__main__":
    sys.exit(main())
