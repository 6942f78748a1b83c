"""The one line each bench script prints per figure for README's benchmark
table (bench/run collects them):

    TABLE|<figure>|<ours>|<peer and its figure>|<ratio>|<target>

Every figure is measured in the same run as its peer; the ratio is ours
over the peer's, in the direction the target names."""


def row(figure, ours, peer, ratio, target):
    fields = [figure, ours, peer, f"{ratio:.2f}", target]
    if any("|" in field or "\n" in field for field in fields):
        raise ValueError("a table field may not hold '|' or a newline")
    print("TABLE|" + "|".join(fields), flush=True)
