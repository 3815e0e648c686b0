"""PyTorch through pstrain servers: DistributedOptimizer.

    import torch, pstrain, pstrain.torch
    model = torch.nn.Sequential(...)                       # any unmodified nn.Module
    w = pstrain.Worker("job.yaml", steps=n)                # rank, coordinator from the env
    opt = pstrain.torch.DistributedOptimizer(model, w)     # declares, joins
    for x, y in batches:
        opt.zero_grad()
        loss_fn(model(x), y).backward()
        opt.step()                                         # push grads, pull weights
    opt.finish()

Each parameter (in model.named_parameters() order, which every worker shares) is a tensor
of the job; the flat layout is that order. After join every parameter's storage *is* the
worker's weight buffer (param.data is a view of it, no copy), so a pull updates the model
in place. step() copies each gradient into the worker's gradient buffer (one memcpy per
parameter), pushes, and pulls the weights of the next clock: the servers apply the job's
optimizer (optimizer: in the job file) under its consistency rule. Rank 0's initial
weights are the model's own at construction; every worker starts from them.
"""
import numpy as np
import torch


class DistributedOptimizer:
    def __init__(self, model, worker):
        params = model.named_parameters() if hasattr(model, "named_parameters") else model
        self.worker = worker
        self.params = [(n, p) for n, p in params if p.requires_grad]
        if any(p.dtype != torch.float32 for _, p in self.params):
            raise TypeError("pstrain: parameters must be float32")
        for name, p in self.params:
            worker.declare(name, tuple(p.shape) or (1,))
            worker.set(name, p.detach().cpu().numpy())
        worker.join()
        self._grads = []
        with torch.no_grad():
            for name, p in self.params:
                view = torch.from_numpy(worker.weights(name)).view(p.shape)
                p.data = view  # the parameter now lives in the worker's buffer
                self._grads.append(worker.grad(name).reshape(-1))

    def zero_grad(self, set_to_none=True):
        for _, p in self.params:
            if p.grad is not None:
                if set_to_none:
                    p.grad = None
                else:
                    p.grad.zero_()

    def step(self):
        """Pushes every parameter's gradient (zeros for one without) and pulls fresh
        weights into the parameters."""
        for (name, p), g in zip(self.params, self._grads):
            if p.grad is None:
                g[:] = 0
            else:
                g[:] = p.grad.detach().reshape(-1).cpu().numpy()
        self.worker.step()

    def finish(self):
        """This worker is done (rank 0: the parameters then hold the final weights). The
        parameters get storage of their own again, so the model outlives the worker."""
        self.worker.finish()
        with torch.no_grad():
            for _, p in self.params:
                p.data = p.data.clone()
