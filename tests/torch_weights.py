"""Random torchvision RetinaNet weights with a trained network's statistics (torch extra only).

Shared by the conversion tests and `benchmarks/precision_detections.py`: no COCO weights download
here, so a difference that real weights would show must show with these.
"""

import numpy as np
import torch
import torchvision


def trained_like(model, seed=1, logit_bias=(-3.5, -2.5), placeholder_rows=None):
    """BatchNorm statistics like an ImageNet-trained ResNet's: most variances of order 1, one channel
    in 16 nearly dead (variance 1e-4 to 1e-3), scales in proportion, where the epsilon and the
    order of rsqrt and epsilon change the output; GroupNorm affines and every conv bias random;
    head convs scaled up so the logits depend on the picture; the classification bias drawn from
    `logit_bias` (around -3: some anchors pass 0.05 and there are detections to compare), -20 on
    `placeholder_rows` (torchvision's background and unused COCO ids, which trained weights never
    fire). Returns the model in eval mode."""
    g = torch.Generator().manual_seed(seed)
    uniform = lambda t, low, high: t.copy_(torch.rand(t.shape, generator=g) * (high - low) + low)  # noqa: E731
    with torch.no_grad():
        for name, m in model.named_modules():
            if isinstance(m, (torch.nn.BatchNorm2d, torchvision.ops.FrozenBatchNorm2d)):
                variance = torch.exp(uniform(torch.empty(m.running_var.shape), np.log(0.2), np.log(5.0)))
                dead = torch.rand(variance.shape, generator=g) < 1 / 16
                variance[dead] = uniform(torch.empty(int(dead.sum())), 1e-4, 1e-3)
                m.running_var.copy_(variance)
                uniform(m.running_mean, -0.1, 0.1), uniform(m.weight, 0.5, 1.0), uniform(m.bias, -0.1, 0.1)
                m.weight.mul_(variance.sqrt())  # the scale in proportion: activations keep their size
            elif isinstance(m, torch.nn.GroupNorm):
                uniform(m.weight, 0.75, 1.25), uniform(m.bias, -0.1, 0.1)
            elif isinstance(m, torch.nn.Conv2d):
                if name.startswith("head."):
                    m.weight.mul_(3.0)
                if m.bias is not None:
                    uniform(m.bias, -0.1, 0.1)
        logits = model.head.classification_head.cls_logits.bias
        uniform(logits, *logit_bias)
        if placeholder_rows is not None:
            logits.view(9, -1)[:, placeholder_rows] = -20.0
    return model.eval()
