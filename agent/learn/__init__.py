"""The learner daemon (``swarmdrive learn``): frames in, samples buffered on disk, training in
the background, rounds with the fleet, each final model installed for the inference service."""
