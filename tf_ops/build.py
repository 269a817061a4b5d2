"""Build entry point for the compiled ops (called by scripts/setup_env.sh).

Nothing to compile yet: the kernels arrive with the tf_ops issue.
"""


def main(argv=None):
    print("tf_ops: no compiled ops yet (pure-TF implementations are used)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
