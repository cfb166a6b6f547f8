"""Reports: the shop dashboard and the platform dashboard (sales, buyers, conversion per day,
drawn as server-side SVG charts), product page view counts, and wallet statement exports."""
