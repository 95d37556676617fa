"""Parse layer selections such as 'last:4', 'all', '8,9,10,11' or '8-11'."""

from __future__ import annotations

from ccsclip.errors import InvalidInputError

_HELP = "use 'all', 'last:N', a comma list like '8,9,11' or a range like '8-11'"


def parse_layers(text: str, n_layers: int) -> tuple[int, ...]:
    """Layer indices (0-based, sorted, unique) of a model with `n_layers` layers."""
    text = text.strip().lower()
    try:
        if text == "all":
            layers = list(range(n_layers))
        elif text.startswith("last:"):
            count = int(text.removeprefix("last:"))
            if not 1 <= count <= n_layers:
                raise InvalidInputError(
                    f"last:{count} asks for more layers than the {n_layers} there are"
                )
            layers = list(range(n_layers - count, n_layers))
        elif "-" in text and "," not in text:
            start, stop = (int(part) for part in text.split("-"))
            layers = list(range(start, stop + 1))
        else:
            layers = [int(part) for part in text.split(",") if part.strip()]
    except ValueError as exc:
        raise InvalidInputError(f"bad layer selection {text!r}: {_HELP}") from exc
    bad = [layer for layer in layers if not 0 <= layer < n_layers]
    if bad or not layers:
        raise InvalidInputError(
            f"bad layer selection {text!r}: layers are 0..{n_layers - 1} "
            f"(got {bad or 'none'}); {_HELP}"
        )
    return tuple(sorted(set(layers)))
