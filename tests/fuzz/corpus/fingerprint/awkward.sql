select 5.x, 1e5, 0x1F, n'a', -5, .5, t.5 /* c */ -- d
# e
