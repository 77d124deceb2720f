"""The one base class of every error a user can cause and fix (bad config, data, weights,
checkpoints, a training run that diverged): its message is the single line to show, with
what went wrong, where, and the fix. Anything else is a bug and keeps its traceback."""


class UserError(Exception):
    pass
