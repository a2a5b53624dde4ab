"""Does the toon / realness classifier read noise as the style? Share called toon (or real) of real test clips of each
domain, clean and with Gaussian pixel noise, and blurred (a flat, denoised look)."""
import json, sys
import torch
import torch.nn.functional as F
from pathlib import Path
from video_adapter.data.dataset import VideoFolderDataset
from video_adapter.evaluation.metrics.style import class_hits
from video_adapter.evaluation.metrics.video_net import load_video_net

net_dir, label, out = sys.argv[1], sys.argv[2], sys.argv[3]
folders = sys.argv[4:]
net = load_video_net(net_dir, torch.device("cpu"))
g = torch.Generator().manual_seed(0)
rows = {}
for folder in folders:
    data = VideoFolderDataset(Path(folder), frames=net.cfg.frames, size=(net.cfg.height, net.cfg.width), random_crop=False)
    v = torch.stack([data[i]["video"] for i in range(min(64, len(data)))])
    b, c, f, h, w = v.shape
    blur = F.avg_pool2d(v.transpose(1, 2).reshape(b * f, c, h, w), 3, 1, 1, count_include_pad=False)
    blur = blur.reshape(b, f, c, h, w).transpose(1, 2)
    for name, x in [("clean", v), ("noise 0.1", v + 0.1 * torch.randn(v.shape, generator=g)),
                    ("noise 0.3", v + 0.3 * torch.randn(v.shape, generator=g)), ("blur 3x3", blur)]:
        rows[f"{folder} {name}"] = float(class_hits(net, x.clamp(-1, 1), label).mean())
        print(f"| {folder} | {name} | {rows[f'{folder} {name}']:.2f} |", flush=True)
Path(out).write_text(json.dumps({"classifier": net_dir, "label": label, "clips": 64, "share": rows}, indent=1) + "\n")
