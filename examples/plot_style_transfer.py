"""
Neural style transfer
=====================

A CNN trained on photos describes an image at two levels: its deep
activations say *what* is where (content), while the correlations between
its feature maps — their Gram matrices — capture colors, strokes and
textures independently of position (style). Style transfer optimizes the
pixels of an image so that its activations match a content image and its
Gram matrices match a style image (Gatys et al., 2016), plus a small
total-variation term against noise.

:class:`~skvision.style.StyleTransfer` does this with the offline
EfficientNet-Lite0: ``fit`` records the style, ``transform`` paints content
images in it. EfficientNet is not the VGG network classic style transfer
used; its block outputs are narrow linear bottlenecks whose Gram matrices
carry little texture, so the default layers are the wide ReLU6 activations
inside the blocks (strides 2 to 16), which behave like VGG's ReLU outputs.

With the defaults (optimized at 256 px, 150 L-BFGS iterations) the two
300x300 images below take well under a minute on 2 CPU cores;
``bench/style_throughput.py`` measures the speed against a plain loop.
"""

# %%
import time

import matplotlib.pyplot as plt
import numpy as np
from skimage import color, data, transform

from skvision.plotting import plot_history
from skvision.style import StyleTransfer

# A procedural style image: swirled rainbow waves.
rows, cols = np.mgrid[0:256, 0:256] / 256
hue = (np.sin(12 * cols + 4 * np.sin(9 * rows)) + 1) / 2
value = 0.6 + 0.4 * np.cos(30 * rows + 8 * cols)
waves = color.hsv2rgb(np.stack([hue, np.full_like(hue, 0.9), value], axis=-1))
style = (transform.swirl(waves, strength=6, radius=180) * 255).astype(np.uint8)

# Two content images, as one 300 x 300 batch.
content = np.stack([
    transform.resize(image, (300, 300), preserve_range=True).astype(np.uint8)
    for image in (data.astronaut(), data.chelsea()[:, 75:375])
])

start = time.perf_counter()
painter = StyleTransfer(random_state=0).fit(style[np.newaxis])
painted = painter.transform(content)
style_loss = painter.loss_history_["style_loss"]
print(f"2 images in {time.perf_counter() - start:.1f} s; style loss fell "
      f"{style_loss.iloc[0] / style_loss.iloc[-1]:.0f}-fold")

fig, axes = plt.subplots(2, 3, figsize=(9, 6))
for row, (original, result) in enumerate(zip(content, painted)):
    for ax, image, title in zip(axes[row], (original, style, result),
                                ("content", "style", "result")):
        ax.imshow(image)
        ax.set_title(title)
        ax.set_axis_off()
fig.tight_layout()

# %%
# The losses during the last image's optimization.
plot_history(painter)
plt.show()
