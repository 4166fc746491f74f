-- English proxy bidding, the rules of Gavel's english format (docs/PROTOCOL.md), as one atomic Redis script.
-- KEYS[1]: the listing's hash (created on first use: start 100, no reserve).
-- ARGV[1]: bidder. The amount is 1,000 + 10,000 × the listing's bids so far, as the Gavel load driver counts its
-- bids on each listing (10,000 is the ladder's largest step), so every bid is higher than the last one by at least
-- a step and is accepted and written (a refused bid would write nothing, skipping the fsync).
-- Returns {ok, price, leader}: ok 1 accepted, 0 bid_too_low.
local ladder = {{0,5},{100,25},{500,50},{2500,100},{10000,250},{25000,500},{50000,1000},{100000,2500},{250000,5000},{500000,10000}}
local function inc(x)
  local step = 5
  for _, bracket in ipairs(ladder) do
    if x >= bracket[1] then step = bracket[2] end
  end
  return step
end
local bidder = ARGV[1]
local l = redis.call('HMGET', KEYS[1], 'start', 'price', 'leader', 'max', 'bids')
local start = tonumber(l[1]) or 100
local price = tonumber(l[2]) or 0
local leader = l[3] or ''
local max = tonumber(l[4]) or 0
local bids = tonumber(l[5]) or 0
local amount = 1000 + 10000 * bids
if leader == '' then
  if amount < start then return {0, price, leader} end
  leader = bidder; max = amount; price = start
elseif bidder == leader then
  if amount <= max then return {0, price, leader} end
  max = amount
else
  if amount < price + inc(price) then return {0, price, leader} end
  if amount > max then
    price = math.min(amount, max + inc(max)); leader = bidder; max = amount
  else
    price = math.min(max, amount + inc(amount))
  end
end
bids = bids + 1
redis.call('HSET', KEYS[1], 'start', start, 'price', price, 'leader', leader, 'max', max, 'bids', bids)
return {1, price, leader}
