"""``textvae reconstruct`` and ``textvae sample``: decode sentences from a trained run folder.

``reconstruct`` decodes each given sentence from its posterior center, ``sample`` decodes prior
draws; both share the decoding options of :func:`add_decoding_arguments` (greedy, sampled or beam
search) and open the run with :func:`pyro_textvae.run_folder.open_run`.
"""
from __future__ import annotations

import argparse
import sys

from .options import CHECKPOINT_HELP, at_least, check_folder, positive_float


def _decoding_generator(args: argparse.Namespace):
    """The ``torch.Generator`` of ``--strategy sample`` on ``--device``, seeded with ``--seed``."""
    import torch

    return torch.Generator(device=args.device).manual_seed(args.seed)


def _reconstruct(args: argparse.Namespace) -> None:
    """``textvae reconstruct``: decode each sentence from its posterior center (``mu`` or the vMF
    mean direction) and print ``INPUT -> OUTPUT``, a line a sentence; ``--strategy sample`` draws its
    words from a generator seeded with ``--seed``."""
    check_folder(args.run, "RUN")
    import torch

    from evaluation.generation import decode, posterior_center
    from inference.run import check_run_config
    from pyro_textvae.data import make_batch
    from pyro_textvae.run_folder import open_run

    if any(not sentence.split() for sentence in args.sentences):
        raise ValueError("reconstruct: an empty sentence")
    run = open_run(args.run, checkpoint=args.checkpoint, device=args.device, check=check_run_config)
    vocab = run.corpus.vocab
    unknown = sorted({word for sentence in args.sentences for word in sentence.split() if word not in vocab})
    if unknown:
        print(f"textvae reconstruct: not in the vocabulary of {args.run}, read as <unk>: {' '.join(unknown)}",
              file=sys.stderr)
    generator = _decoding_generator(args)
    for sentence in args.sentences:
        batch = make_batch([vocab.encode(sentence.split())]).to(args.device)
        with torch.no_grad():
            z = posterior_center(run.vae.posterior_distribution(batch.tokens, batch.mask))
        out = decode(run.vae, z, args.strategy, args.max_length, args.beam_width, generator=generator)
        print(f"{' '.join(sentence.split())} -> {' '.join(vocab.decode(out[0]))}")


def _sample(args: argparse.Namespace) -> None:
    """``textvae sample``: decode ``-n`` prior draws; the draws (``torch.manual_seed``) and the
    words of ``--strategy sample`` (a generator) both follow ``--seed``."""
    check_folder(args.run, "RUN")
    import torch

    from evaluation.generation import decode
    from inference.run import check_run_config
    from pyro_textvae.run_folder import open_run

    run = open_run(args.run, checkpoint=args.checkpoint, device=args.device, check=check_run_config)
    torch.manual_seed(args.seed)
    z = run.vae.prior(args.n, args.device).sample()
    for ids in decode(run.vae, z, args.strategy, args.max_length, args.beam_width, args.temperature,
                      _decoding_generator(args)):
        print(" ".join(run.corpus.vocab.decode(ids)))



def add_decoding_arguments(p: argparse.ArgumentParser, seed_help: str) -> None:
    p.add_argument("--strategy", choices=["greedy", "sample", "beam"], default="greedy",
                   help="most likely word, a word drawn from the softmax, or beam search")
    p.add_argument("--beam-width", type=at_least(1), default=5, help="beams of --strategy beam")
    p.add_argument("--max-length", type=at_least(1), default=30, help="words decoded at most")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:K")
    p.add_argument("--checkpoint", choices=["best", "last"], default="best",
                   help=CHECKPOINT_HELP)
    p.add_argument("--seed", type=at_least(0), default=0, help=seed_help)


def add_decode_commands(subparsers: argparse._SubParsersAction) -> None:
    """Register ``textvae reconstruct`` and ``textvae sample``."""
    rec = subparsers.add_parser("reconstruct", help="encode sentences and decode them back",
                                description="Encode each sentence, decode it from its posterior center and "
                                            "print INPUT -> OUTPUT, a line a sentence.")
    rec.add_argument("run", help="run folder")
    rec.add_argument("sentences", nargs="+", metavar="SENTENCE", help="words separated by spaces")
    add_decoding_arguments(rec, "seed of the words drawn by --strategy sample")
    rec.set_defaults(func=_reconstruct)
    sample = subparsers.add_parser("sample", help="decode sentences from prior samples",
                                   description="Draw z from the prior and decode each draw.")
    sample.add_argument("run", help="run folder")
    sample.add_argument("-n", type=at_least(1), default=10, help="prior draws decoded")
    sample.add_argument("--temperature", type=positive_float, default=1.0,
                        help="softmax temperature of --strategy sample")
    add_decoding_arguments(sample, "seed of the prior draws and of the words drawn by --strategy sample")
    sample.set_defaults(func=_sample)
