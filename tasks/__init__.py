"""SeqIO task and mixture registrations (``import tasks`` registers them all).

Data locations and the vocabulary are resolved when data is read (``xtr_jax.data.locations``,
``xtr_jax.data.vocab.vocabulary_path``). Mixture membership (the scaling-study language order,
few-shot k) is fixed at registration: after parsing gin files that change it, call
``tasks.register_all()`` again (it replaces existing registrations).
"""

from tasks import mixtures, swim_ir, xor_tydi


def register_all() -> None:
  swim_ir.register()
  xor_tydi.register()
  mixtures.register()


register_all()
