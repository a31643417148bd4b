from tests import images


def images_available() -> bool:
    return images.have("sfdisk", "mkfs.ext4")
