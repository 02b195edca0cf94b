"""User-facing errors. The CLI prints these as one line and exits non-zero, no traceback.

Every message says what was wrong and what is accepted.
"""


class AvedgeError(Exception):
    """Base of every error caused by the user's input rather than a bug in avedge."""


class UnknownNameError(AvedgeError, KeyError):
    """A name (target, backend, recipe, model family) that is not registered."""

    def __init__(self, kind: str, name: str, available):
        self.kind, self.name, self.available = kind, name, sorted(available)
        listed = ", ".join(self.available) or "(none)"
        super().__init__(f"unknown {kind} {name!r}; available: {listed}")

    def __str__(self) -> str:  # KeyError would repr() the message
        return self.args[0]


class ArtifactError(AvedgeError):
    """An artifact directory that is missing, corrupt, or does not match its manifest."""


class InputError(AvedgeError, ValueError):
    """Inputs whose names, shapes, dtypes or values the model does not accept."""


class BackendUnavailableError(AvedgeError):
    """A backend that cannot run on this machine (missing package, no GPU, ...)."""


class RecipeNotApplicable(AvedgeError):
    """A recipe's module-level config that cannot be applied to this model (pruning a
    model with no MLP pairs, head pruning with no attention, ...). `graph` names the
    graph of a composite artifact it was refused on (None for a single graph)."""

    def __init__(self, message: str, graph: str | None = None):
        super().__init__(message)
        self.graph = graph
