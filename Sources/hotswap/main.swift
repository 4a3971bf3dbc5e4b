print("hotswap")
