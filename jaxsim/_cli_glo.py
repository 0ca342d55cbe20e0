"""``jaxsim glo``: generators learned by Generative Latent Optimisation."""

from __future__ import annotations

import argparse


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "glo",
        help="learn shape/material generators by GLO through the simulator",
        description=(
            "Generative Latent Optimisation (GLO) of the phantom's generators on "
            "real images through the differentiable simulator. Run 'jaxsim glo "
            "KIND --help' for a generator's options."
        ),
        epilog=(
            "example: jaxsim glo material --real ../shared/data/acdc --twins "
            "twins/patient001 --spacing 10 1.5 1.5 --out glo_run"
        ),
    )
    kinds = p.add_subparsers(dest="glo_kind", metavar="KIND")
    from jaxsim._cli_glo_material import add_material_parser

    add_material_parser(kinds)
    p.set_defaults(func=lambda args: _usage(p))
    return p


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2
