"""`ccsclip organism ...`: generate the synthetic world's files and train the embedded default."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from ccsclip.cpu_threads import ThreadsOpt

app = typer.Typer(
    help="The embedded default: synthetic concept world and its small CLIP.", no_args_is_help=True
)


@app.command()
def generate(
    out: Annotated[Path, typer.Option(help="folder for probes, bias probe, gallery and pool")],
    seed: Annotated[int, typer.Option(min=0)] = 0,
    per_class: Annotated[
        int, typer.Option(min=1, help="images per class of each accuracy probe")
    ] = 50,
    per_cell: Annotated[
        int, typer.Option(min=1, help="bias-probe images per shape x colour")
    ] = 100,
    gallery: Annotated[int, typer.Option(min=1, help="retrieval gallery size")] = 200,
) -> None:
    """Write accuracy probes (one per concept), the bias probe, a gallery and the tagged pool."""
    from ccsclip.organism.probes import generate_all

    summary = generate_all(out, seed, n_per_class=per_class, n_per_cell=per_cell, n_gallery=gallery)
    typer.echo(json.dumps(summary, indent=2, default=str))


@app.command()
def train(
    out: Annotated[Path, typer.Option(help="folder for <model>.safetensors and its training card")],
    steps: Annotated[int, typer.Option(min=1)] = 3000,
    time_budget: Annotated[float | None, typer.Option(help="stop after this many seconds")] = None,
    batch_size: Annotated[int, typer.Option(min=2)] = 128,
    bias_p: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="planted shape->colour rate")
    ] = 0.7,
    seed: Annotated[int, typer.Option(min=0)] = 0,
    data_seed: Annotated[int, typer.Option(min=0)] = 0,
    model: Annotated[str, typer.Option(help="the config to train")] = "ccsclip-organism",
    eval_images: Annotated[int, typer.Option(min=10)] = 1000,
    threads: ThreadsOpt = None,
) -> None:
    """Train the small CLIP on the world (fp16 safetensors + training card, written atomically)."""
    from ccsclip.organism.train import TrainConfig
    from ccsclip.organism.train import train as run_training
    from ccsclip.organism.weights import save_trained

    cfg = TrainConfig(
        model=model,
        steps=steps,
        time_budget_s=time_budget,
        batch_size=batch_size,
        bias_p=bias_p,
        seed=seed,
        data_seed=data_seed,
        eval_images=eval_images,
    )
    loaded, card = run_training(cfg)
    paths = save_trained(loaded, card, out)
    typer.echo(
        json.dumps(
            {
                "weights": str(paths[0]),
                "card": str(paths[1]),
                "zero_shot": card["zero_shot"],
                "final_loss": card["final_loss"],
            },
            indent=2,
        )
    )


@app.command()
def plant(
    out: Annotated[Path, typer.Option(help="folder for the planted <model>.safetensors and card")],
    carrier: Annotated[
        list[str] | None,
        typer.Option(
            help="COMPONENT:COLOUR:STRENGTH (repeat), e.g. L5H7:red:0.08 or L4.mlp:blue:0.06; "
            "default: L5H7:red:0.08, L3H6:red:0.04, L4.mlp:blue:0.06"
        ),
    ] = None,
    pretrained: Annotated[
        str, typer.Option(help="weights to plant into: 'embedded' or a checkpoint path")
    ] = "embedded",
    model: Annotated[str, typer.Option(help="the organism config")] = "ccsclip-organism",
    seed: Annotated[
        int, typer.Option(min=0, help="seed of the images the readouts are fit on")
    ] = 0,
) -> None:
    """Plant known bias carriers (heads, MLPs) into the organism: positive controls."""
    from ccsclip.errors import CcsclipError
    from ccsclip.models import load_model
    from ccsclip.organism.plant import DEFAULT_PLAN, parse_carrier
    from ccsclip.organism.plant import plant as run_plant
    from ccsclip.organism.weights import save_trained

    try:
        plan = [parse_carrier(text) for text in carrier] if carrier else list(DEFAULT_PLAN)
        loaded = load_model(model, pretrained)
        planted = run_plant(loaded, plan, seed)
        card = {"model": model, "planted_into": pretrained, "planted": planted}
        paths = save_trained(loaded, card, out)
    except CcsclipError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    typer.echo(json.dumps({"weights": str(paths[0]), "card": str(paths[1]), **planted}, indent=2))
