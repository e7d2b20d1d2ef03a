"""Training on the deployment grid (issue 28): the integer network a target runs, as the training forward."""
